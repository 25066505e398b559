// Device pieces of the decode anchors' exact Top-k that the selects share: the multi-pass and cluster
// selects (anchor_decode.cu, select_decode.cu), the stream select (select_decode.cu, bit 2048), the b1
// select (select_b1_decode.cu). NT = threads per CTA (a multiple of 32). Not part of the public C API.
#pragma once
#include <cuda_fp16.h>

#include "common.cuh"
#include "select_plan.h"

namespace kascade {

// Inclusive prefix sum of v over the warp's lanes (all 32 lanes call it).
template <typename V>
__device__ __forceinline__ V warp_inclusive_sum(V v) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const V y = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += y;
  }
  return v;
}

// THE block scan of every select ("find the bin holding rank k"): the bin of an nb-bin histogram that
// holds rank krem (1-based) counted from the top bin down, and the rank still wanted inside it: res[0] =
// bin, res[1] = krem minus the counts of the bins above it. count(bin) returns a bin's count from any
// memory (shared, another CTA's shared memory, global); each thread reads nb / NT consecutive bins, and
// the one thread whose bins hold the rank reads its bins once more. nb a multiple of NT (NT threads per
// CTA, a multiple of 32); wsum: NT / 32 shared words; res: 2 shared words. All NT threads call it; it
// begins and ends with a CTA barrier, so wsum / res may be reused by the next call and res is valid
// after it returns. krem must be in 1 .. (the histogram's total); otherwise res is left untouched.
template <int NT, typename Count>
__device__ __forceinline__ void select_rank_bin(Count count, int nb, unsigned krem, unsigned* wsum, unsigned* res) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int per = nb / NT;
  unsigned cnt = 0;
  for (int e = 0; e < per; ++e) cnt += count(nb - 1 - (tid * per + e));
  const unsigned inc = warp_inclusive_sum(cnt);
  __syncthreads();  // earlier readers of wsum / res are done
  if (lane == 31) wsum[warp] = inc;
  __syncthreads();
  unsigned before = inc - cnt;
  for (int w = 0; w < warp; ++w) before += wsum[w];
  if (before < krem && before + cnt >= krem) {
    unsigned cum = before;
    for (int e = 0; e < per; ++e) {
      const int bin = nb - 1 - (tid * per + e);
      const unsigned c = count(bin);
      if (cum + c >= krem) {
        res[0] = static_cast<unsigned>(bin);
        res[1] = krem - cum;
        break;
      }
      cum += c;
    }
  }
  __syncthreads();
}

// select_rank_bin over a histogram h[0 .. nb) in shared memory.
template <int NT>
__device__ void select_find_from_top(const unsigned* h, int nb, unsigned krem, unsigned* res) {
  __shared__ unsigned wsum[NT / 32];
  select_rank_bin<NT>([h](int bin) { return h[bin]; }, nb, krem, wsum, res);
}

// Exact radix select over count non-negative f32 patterns value(i): the pattern of the rank-krem score
// from the top (res[0]) and how many scores equal to it are still wanted (res[1]). Three digits of
// bits 30..20, 19..9, 8..0 through the shared histogram sh (>= 2048 bins); with level0 = 1 the scores
// all share bits 30..20 = prefix0 and the first digit is skipped.
template <int NT, typename F>
__device__ void select_radix(F value, int count, unsigned krem, unsigned* sh, unsigned* res, int level0 = 0,
                             unsigned prefix0 = 0u) {
  const int tid = threadIdx.x;
  unsigned prefix = prefix0;
#pragma unroll 1
  for (int level = level0; level < 3; ++level) {
    const int shift = level == 0 ? 20 : level == 1 ? 9 : 0;
    const int nb = level == 2 ? 512 : 2048;
    const int hiShift = shift + (level == 2 ? 9 : 11);  // bits above this digit: the prefix so far
    for (int i = tid; i < nb; i += NT) sh[i] = 0u;
    __syncthreads();
    for (int i = tid; i < count; i += NT) {
      const unsigned v = value(i);
      if (level == 0 || (v >> hiShift) == prefix) atomicAdd(&sh[(v >> shift) & static_cast<unsigned>(nb - 1)], 1u);
    }
    __syncthreads();
    select_find_from_top<NT>(sh, nb, krem, res);
    prefix = (prefix << (level == 2 ? 9 : 11)) | res[0];
    krem = res[1];
    __syncthreads();  // everyone has read res before the next digit's find writes it
  }
  if (threadIdx.x == 0) {
    res[0] = prefix;
    res[1] = krem;
  }
  __syncthreads();
}

// Bit 1048576 (the key-major f16 intermediate, GS > 1): S[e] += sum_h u_h(x + e) c_h, c_h = 2^(m16_h - M_h - 15) / L_h,
// over the E keys x .. x + E - 1 of one 16-key step (x a multiple of E) of the KV-head row whose query-head rows start
// at bh0, read as E x GS consecutive f16 values (E GS / 8 16-byte loads); heads in the same order as the head-major
// loops (the same sums). Mh / iL: the heads' softmax max and 1 / sum.
template <int GS, int E>
__device__ __forceinline__ void u16_key_major_pool(const __half* u, const float* m16, size_t bh0, int x, int nU,
                                                   int layout, const float* Mh, const float* iL, float (&S)[E]) {
  static_assert(GS > 1 && GS % 2 == 0 && (E * GS) % 8 == 0, "whole 16-byte loads, head pairs");
  float c[GS];
#pragma unroll
  for (int h = 0; h < GS; ++h)
    c[h] = exp2f(__ldcg(m16 + u16_m16_index(bh0, h, x, nU, GS, layout)) - Mh[h] - kU16ScaleLog2) * iL[h];
  const __half* src = u + u16_index(bh0, 0, x, nU, GS, layout);
#pragma unroll
  for (int q = 0; q < E * GS / 8; ++q) {
    const uint4 w = __ldcs(reinterpret_cast<const uint4*>(src) + q);
    const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&ws[p]));
      const int i = q * 8 + p * 2;  // elements i, i + 1: key i / GS, heads i % GS and i % GS + 1
      S[i / GS] = fmaf(f.x, c[i % GS], S[i / GS]);
      S[i / GS] = fmaf(f.y, c[i % GS + 1], S[i / GS]);
    }
  }
}

// The stream select's pooling (select_decode.cu's phase 1): the
// post-softmax, group-pooled scores S[e] of keys x + e (e < 8; x a multiple of 8 below n) of the KV-head row whose
// query-head rows start at bh0, from the f16 intermediate (u16: u and m16 in the u16 layout, rows of nU; keyMajor:
// bit 1048576's order, select_plan.h) or the f32
// log2-domain logits (rows of n); Mh / iL: the heads' softmax max and 1 / sum. Keys past n (the row's padding) get 0.
template <int GS>
__device__ __forceinline__ void stream_pool8(bool u16, int layout, const __half* u, const float* m16,
                                             const float* logits, size_t bh0, int n, int nU, int x, const float* Mh, const float* iL,
                                             float (&S)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) S[e] = 0.f;
  if (u16 && layout != kU16HeadMajor && GS > 1) {  // (at GS = 1 both orders are the same)
    if constexpr (GS > 1) u16_key_major_pool<GS, 8>(u, m16, bh0, x, nU, layout, Mh, iL, S);
  } else if (u16) {
#pragma unroll
    for (int h = 0; h < GS; ++h) {
      const uint4 w = __ldcs(reinterpret_cast<const uint4*>(u + u16_index(bh0, h, x, nU, GS, kU16HeadMajor)));
      const float c = exp2f(__ldcg(m16 + u16_m16_index(bh0, h, x, nU, GS, kU16HeadMajor)) - Mh[h] - kU16ScaleLog2) * iL[h];
      const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&ws[q]));
        S[2 * q] = fmaf(f.x, c, S[2 * q]);
        S[2 * q + 1] = fmaf(f.y, c, S[2 * q + 1]);
      }
    }
  } else {
#pragma unroll
    for (int h = 0; h < GS; ++h) {
      const float* lg = logits + (bh0 + h) * n + x;
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (x + e < n) S[e] += exp2f(__ldcs(lg + e) - Mh[h]) * iL[h];
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e)
    if (x + e >= n) S[e] = 0.f;  // the row's padding: defined, never counted
}
// stream_pool8's scores counted in the shared 12-bit first-digit histogram sh (bits 30..19) and stored at pr[x ..].
template <int GS>
__device__ __forceinline__ void stream_pool8_hist(bool u16, int layout, const __half* u, const float* m16,
                                                  const float* logits, size_t bh0, int n, int nU, int x, const float* Mh, const float* iL,
                                                  unsigned* sh, float* pr) {
  float S[8];
  stream_pool8<GS>(u16, layout, u, m16, logits, bh0, n, nU, x, Mh, iL, S);
#pragma unroll
  for (int e = 0; e < 8; ++e)
    if (x + e < n) atomicAdd(&sh[__float_as_uint(S[e]) >> 19], 1u);
  reinterpret_cast<float4*>(pr + x)[0] = make_float4(S[0], S[1], S[2], S[3]);
  reinterpret_cast<float4*>(pr + x)[1] = make_float4(S[4], S[5], S[6], S[7]);
}

// The stream select's phase-3 loads: the pooled scores of keys xt + u kStreamTile + e (u < tiles2, e < 8) of the
// pooled row pr into v[8 u + e] (both tiles' loads issued before any is used; zeros past n).
__device__ __forceinline__ void stream_load16(const float* pr, int xt, int tiles2, int n, float (&v)[16]) {
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int x = xt + u * kStreamTile;
    float4 v0 = make_float4(0.f, 0.f, 0.f, 0.f), v1 = v0;
    if (u < tiles2 && x < n) {
      v0 = __ldcg(reinterpret_cast<const float4*>(pr + x));
      v1 = __ldcg(reinterpret_cast<const float4*>(pr + x) + 1);
    }
    v[8 * u + 0] = v0.x;
    v[8 * u + 1] = v0.y;
    v[8 * u + 2] = v0.z;
    v[8 * u + 3] = v0.w;
    v[8 * u + 4] = v1.x;
    v[8 * u + 5] = v1.y;
    v[8 * u + 6] = v1.z;
    v[8 * u + 7] = v1.w;
  }
}

// The stream select's classification (phase 3) of pooled scores v[8 u + e] of keys xt + u kStreamTile + e
// (u < tiles2, key < n): bit 8 u + e of mA when the key's first digit (bits 30..19) is above binHi (it goes to the
// output), of mC when it is in [binLo, binHi] (to the list); ia / ic: the warp's inclusive scans of the lanes'
// counts (lane 31: the warp's totals). All 32 lanes of the warp call it.
struct StreamClass16 {
  unsigned mA, mC;
  int ia, ic;
};
__device__ __forceinline__ StreamClass16 stream_class16(const float (&v)[16], int xt, int tiles2, int n, unsigned binLo,
                                                        unsigned binHi) {
  StreamClass16 c{0u, 0u, 0, 0};
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int x = xt + u * kStreamTile;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const unsigned d = __float_as_uint(v[8 * u + e]) >> 19;
      if (u < tiles2 && x + e < n) {
        if (d > binHi) c.mA |= 1u << (8 * u + e);
        else if (d >= binLo) c.mC |= 1u << (8 * u + e);
      }
    }
  }
  c.ia = warp_inclusive_sum(__popc(c.mA));
  c.ic = warp_inclusive_sum(__popc(c.mC));
  return c;
}
// The classified keys written from the warp's slot bases baseA (output o) and baseC (list: keys cl, scores cv), in
// lane order (lane 31's bases broadcast; all 32 lanes call it).
__device__ __forceinline__ void stream_emit16(const StreamClass16& c, const float (&v)[16], int xt, int baseA, int* o,
                                              int baseC, int* cl, float* cv) {
  baseA = __shfl_sync(0xffffffffu, baseA, 31) + c.ia - __popc(c.mA);
  baseC = __shfl_sync(0xffffffffu, baseC, 31) + c.ic - __popc(c.mC);
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const int x = xt + (i >> 3) * kStreamTile + (i & 7);
    if (c.mA & (1u << i)) o[baseA++] = x;
    if (c.mC & (1u << i)) {
      cl[baseC] = x;
      cv[baseC++] = v[i];
    }
  }
}
// The classification step: slots from one atomic per warp and list on the row's global counters *cntA / *cntC.
__device__ __forceinline__ void stream_classify16(const float (&v)[16], int xt, int tiles2, int n, unsigned binLo,
                                                  unsigned binHi, int* cntA, int* cntC, int* o, int* cl, float* cv) {
  const StreamClass16 c = stream_class16(v, xt, tiles2, n, binLo, binHi);
  int baseA = 0, baseC = 0;
  if ((threadIdx.x & 31) == 31) {
    if (c.ia > 0) baseA = atomicAdd(cntA, c.ia);
    if (c.ic > 0) baseC = atomicAdd(cntC, c.ic);
  }
  stream_emit16(c, v, xt, baseA, o, baseC, cl, cv);
}
// The f16 intermediate (bit 1024): the first-digit bins (12-bit, bits 30..19 of the pooled score) whose
// members are listed around the bin b1 holding rank k: every bin the exact window (select_plan.h) around
// any score of b1 can reach, usually b1 - 1 .. b1 + 1. krem (the rank still wanted inside b1) grows by the
// members of the listed bins above b1. hist: the row's 4096-bin histogram.
__device__ __forceinline__ void u16_list_bins(unsigned b1, const unsigned* hist, int gs, unsigned* binLo,
                                              unsigned* binHi, unsigned* krem) {
  const float absW = kStreamWindowAbsPerHead * gs;
  const float lo = __uint_as_float(b1 << 19) * (1.f - kStreamWindow) - absW;
  *binLo = lo > 0.f ? (__float_as_uint(lo) >> 19) : 0u;
  *binHi = b1;
  if (b1 + 1 < 4096u) {
    const float hi = __uint_as_float((b1 + 1) << 19) * (1.f + kStreamWindow) + absW;
    *binHi = min(4095u, __float_as_uint(hi) >> 19);
  }
  for (unsigned x = b1 + 1; x <= *binHi; ++x) *krem += hist[x];
}

// The f16 intermediate's exact finish over a row's list of C keys cl[i] with pooled scores listed(i)
// (their bit patterns) that holds the row's rank-krem key (the keys above the list are written already:
// cnt[0] of them; cnt[1] = cnt[2] = 0 on entry, all set before a barrier). The listed k-th score a_k is
// found; keys above its window [a_k (1 - W) - A, a_k (1 + W) + A] go to o, the window's keys move to the
// front of cl (in place: a round's writes land on entries already read) and their scores are recomputed
// exactly into cv (q . k from the K cache, one warp per key, four keys per warp in flight); an exact radix
// select over them picks the rest. Ties at the k-th value: any of them. Mh / iL: the group's softmax max
// and 1 / sum per head; kg: the KV head's K rows; qg: its GS query rows; qscale: scale x log2(e).
template <typename T, int D, int GS, int NT, typename F>
__device__ void u16_window_finish(F listed, int C, unsigned krem, int* cl, float* cv, int* o, int* cnt, unsigned* sh,
                                  unsigned* res, const float* Mh, const float* iL, const T* kg, const T* qg,
                                  float qscale) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int written = cnt[0];
  select_radix<NT>(listed, C, krem, sh, res);
  const float ak = __uint_as_float(res[0]);
  const float absW = kStreamWindowAbsPerHead * GS;
  const float hi = ak * (1.f + kStreamWindow) + absW, lo = ak * (1.f - kStreamWindow) - absW;
  for (int base = 0; base < C; base += NT) {
    const int i = base + tid;
    int x = -1;
    float v = 0.f;
    if (i < C) {
      x = __ldcg(cl + i);
      v = __uint_as_float(listed(i));
    }
    __syncthreads();
    if (i < C) {
      if (v > hi) {
        o[atomicAdd(&cnt[0], 1)] = x;
      } else if (v >= lo) {
        cl[atomicAdd(&cnt[2], 1)] = x;
      }
    }
    __syncthreads();
  }
  const int U = cnt[2];
  const unsigned want = krem - static_cast<unsigned>(cnt[0] - written);  // >= 1: a_k is in the window
  {
    constexpr int PER = D / 32;
    float qv[GS][PER];
#pragma unroll
    for (int h = 0; h < GS; ++h)
#pragma unroll
      for (int e = 0; e < PER; ++e) qv[h][e] = to_float(qg[h * D + lane * PER + e]);
    constexpr int KPW = 4;
    for (int i0 = warp * KPW; i0 < U; i0 += KPW * (NT / 32)) {
      float kv[KPW][PER];
#pragma unroll
      for (int u = 0; u < KPW; ++u) {
        const int x = i0 + u < U ? __ldcg(cl + i0 + u) : 0;
#pragma unroll
        for (int e = 0; e < PER; ++e) kv[u][e] = to_float(kg[static_cast<size_t>(x) * D + lane * PER + e]);
      }
#pragma unroll
      for (int u = 0; u < KPW; ++u) {
        float S = 0.f;
#pragma unroll
        for (int h = 0; h < GS; ++h) {
          float dot = 0.f;
#pragma unroll
          for (int e = 0; e < PER; ++e) dot = fmaf(qv[h][e], kv[u][e], dot);
          dot = warp_sum(dot);
          S += exp2f(dot * qscale - Mh[h]) * iL[h];
        }
        if (lane == 0 && i0 + u < U) cv[i0 + u] = S;
      }
    }
  }
  __threadfence();
  __syncthreads();
  auto exact = [&](int i) -> unsigned { return __float_as_uint(__ldcg(cv + i)); };
  select_radix<NT>(exact, U, want, sh, res);
  const unsigned thrE = res[0], tiesE = res[1];
  for (int i = tid; i < U; i += NT) {
    const unsigned v = exact(i);
    if (v > thrE || (v == thrE && static_cast<unsigned>(atomicAdd(&cnt[1], 1)) < tiesE))
      o[atomicAdd(&cnt[0], 1)] = __ldcg(cl + i);
  }
}

}  // namespace kascade
