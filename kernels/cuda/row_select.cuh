// KASCADE_VARIANT_ROW_SELECT (bit 65536, cuda-anchor, session 5): the anchors' Top-k select inside the
// scores / layer-0 pass (attn_partial_kernel, decode_attention.cu), so the f16 intermediate never has to
// reach DRAM.
//
// Session 4 (ncu) found the anchor's scores pass at 85 % of DRAM peak with its intermediate writes and 94 %
// without: the write stream interleaved with the K read costs ~250 us at 128k batch 32, whatever its size.
// Here the pass runs on the split schedule with many short splits per (sequence, KV head) row (grid
// (splits, kvHeads, batch): CTAs start in row order, so only a few rows are in flight at a time), and:
//  - the f16 intermediate (bit 1024's u and m16) is stored with an L2 evict-last policy and the K tiles are
//    loaded evict-first, so a row's intermediate (~1.2 MB at 128k, g = 4) stays in L2 while its splits run;
//  - the last CTA of a row to finish (a counter per row, reset by that CTA) reads the row's intermediate
//    back from L2 and selects the row's exact Top-k (row_select_finish below), then discards the lines
//    (discard.global.L2: dropped without a write-back), so they are never written to DRAM.
// The finish per row: the heads' softmax max / sum from the splits' (m, l); pass 1 pools S(x) =
// 2^-15 sum_h u_h(x) exp2(m16_h - M_h) / L_h and builds a 4096-bin histogram of bits 30..19 of S; the bin
// b1 holding rank k and the bins the exact window can reach around it; pass 2 pools again, writes the
// keys above those bins to the row's indices and lists the bins' members; the list's exact finish is the
// stream select's (select_common.cuh: the window around the listed k-th score recomputed from K).
// Correctness does not depend on the cache policies: a line evicted early is written back and read
// from DRAM. Ties at the k-th value: any of them (order free).
#pragma once
#include "decode_attention.cuh"
#include "select_common.cuh"

namespace kascade {

// Completion counters per (sequence, KV head) row (zero at module load, reset by the row's last CTA).
__device__ unsigned g_row_select_done[kRowSelectMaxRows];
constexpr int kRowSelectBins = 4096;  // first digit: bits 30..19 of the pooled score (16 bins per octave)
constexpr size_t kRowSelectSmem = sizeof(unsigned) * kRowSelectBins;

__device__ __forceinline__ uint64_t l2_policy_evict_last() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ void st_u32_hint(void* p, unsigned v, uint64_t pol) {
  asm volatile("st.global.L2::cache_hint.b32 [%0], %1, %2;" ::"l"(p), "r"(v), "l"(pol) : "memory");
}
__device__ __forceinline__ void st_u16_hint(void* p, unsigned short v, uint64_t pol) {
  asm volatile("st.global.L2::cache_hint.b16 [%0], %1, %2;" ::"l"(p), "h"(v), "l"(pol) : "memory");
}
// A [16 rows][64 elements] box of a 3D tensor map with an L2 cache policy (the row select's K tiles).
__device__ __forceinline__ void tma_load_3d_hint(void* smem, const CUtensorMap* map, int c0, int c1, int c2,
                                                 uint64_t* bar, uint64_t pol) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, "
      "%4, %5}], [%2], %6;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem))),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(static_cast<uint32_t>(__cvta_generic_to_shared(bar))), "r"(c0),
      "r"(c1), "r"(c2), "l"(pol)
      : "memory");
}
// Drops the 128-byte lines that lie wholly inside [p, p + bytes) from L2 without writing them back.
__device__ __forceinline__ void l2_discard_range(const void* p, size_t bytes, int tid, int nt) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t lo = (a + 127) & ~static_cast<uintptr_t>(127), hi = (a + bytes) & ~static_cast<uintptr_t>(127);
  for (uintptr_t x = lo + static_cast<uintptr_t>(tid) * 128; x < hi; x += static_cast<uintptr_t>(nt) * 128)
    asm volatile("discard.global.L2 [%0], 128;" ::"l"(x) : "memory");
}

// One row's finish, run by every CTA of the pass when its split is done (all 128 threads call; only the
// row's last CTA proceeds).
struct RowSelectJob {
  long long row;          // b * kvHeads + j
  size_t bh0;             // the row's first query head, b * heads + j * GS
  int n, splits, topk;
  float qscale;           // softmax scale x log2(e)
  size_t intermRows;      // batch x heads: rows of the f16 intermediate
  const __half* u;        // [batch x heads][u16_stride(n)], then m16 (select_plan.h)
  const float* part_ml;   // [batch x heads][splits][2]
  const void* kRows;      // the KV head's K rows [capacity][D]
  const void* qRows;      // its GS query rows [GS][D]
  int* out;               // [topk] the row's indices
  int* cand;              // [n] the list's keys
  float* candVal;         // [n] their scores
};

template <typename T, int D, int GS>
__device__ __noinline__ void row_select_finish(const RowSelectJob r, unsigned* sh) {
  constexpr int NT = 128;
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2];
  __shared__ int cnt[4];  // keys written, ties taken, window keys, list length
  __shared__ int last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    unsigned* ctr = g_row_select_done + r.row;
    const bool l = atomicAdd(ctr, 1u) == static_cast<unsigned>(r.splits) - 1u;
    if (l) *ctr = 0u;
    last = l ? 1 : 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int h = warp; h < GS; h += NT / 32) {
    const float* ml = r.part_ml + (r.bh0 + h) * r.splits * 2;
    float M = -INFINITY;
    for (int s = lane; s < r.splits; s += 32) M = fmaxf(M, __ldcg(ml + 2 * s));
    M = warp_max(M);
    float L = 0.f;
    for (int s = lane; s < r.splits; s += 32) {
      const float m = __ldcg(ml + 2 * s);
      if (m != -INFINITY) L += __ldcg(ml + 2 * s + 1) * exp2f(m - M);
    }
    L = warp_sum(L);
    if (lane == 0) {
      Mh[h] = M;
      iL[h] = 1.f / L;
    }
  }
  for (int i = tid; i < kRowSelectBins; i += NT) sh[i] = 0u;
  if (tid == 0) cnt[0] = cnt[1] = cnt[2] = cnt[3] = 0;
  __syncthreads();

  const int n = r.n, nU = u16_stride(n);
  const __half* u = r.u + r.bh0 * nU;  // the group's GS rows are consecutive
  const float* m16 = u16_m16(const_cast<void*>(static_cast<const void*>(r.u)), r.intermRows, n) + r.bh0 * (nU / 16);
  // Pooled scores of 8 keys x0 .. x0 + 7 per thread, U groups of them with all loads issued first.
  constexpr int U = GS >= 4 ? 2 : 8 / GS;
  constexpr int kStep = U * NT * 8;
  auto pool = [&](int x0, float (&S)[U][8]) {
    uint4 w[U][GS];
    float c[U][GS];
#pragma unroll
    for (int g = 0; g < U; ++g) {
      const int x = x0 + g * NT * 8;
#pragma unroll
      for (int h = 0; h < GS; ++h) {
        if (x < n) {
          w[g][h] = __ldcg(reinterpret_cast<const uint4*>(u + static_cast<size_t>(h) * nU + x));
          c[g][h] = __ldcg(m16 + static_cast<size_t>(h) * (nU / 16) + x / 16);
        } else {
          w[g][h] = make_uint4(0u, 0u, 0u, 0u);
          c[g][h] = -INFINITY;
        }
      }
    }
#pragma unroll
    for (int g = 0; g < U; ++g) {
#pragma unroll
      for (int e = 0; e < 8; ++e) S[g][e] = 0.f;
#pragma unroll
      for (int h = 0; h < GS; ++h) {
        const float cw = exp2f(c[g][h] - Mh[h] - kU16ScaleLog2) * iL[h];
        const uint32_t ws[4] = {w[g][h].x, w[g][h].y, w[g][h].z, w[g][h].w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&ws[q]));
          S[g][2 * q] = fmaf(f.x, cw, S[g][2 * q]);
          S[g][2 * q + 1] = fmaf(f.y, cw, S[g][2 * q + 1]);
        }
      }
    }
  };

  // Pass 1: the first-digit histogram. (Loops run uniformly over the CTA: pass 2 shuffles across the warp.)
  for (int base = 0; base < n; base += kStep) {
    const int x0 = base + 8 * tid;
    float S[U][8];
    pool(x0, S);
#pragma unroll
    for (int g = 0; g < U; ++g)
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (x0 + g * NT * 8 + e < n) atomicAdd(&sh[__float_as_uint(S[g][e]) >> 19], 1u);
  }
  __syncthreads();
  select_find_from_top<NT>(sh, kRowSelectBins, static_cast<unsigned>(r.topk), res);
  unsigned binLo, binHi, krem = res[1];
  u16_list_bins(res[0], sh, GS, &binLo, &binHi, &krem);

  // Pass 2: keys above the list bins to out, the bins' members to the list (warp-aggregated slots).
  for (int base = 0; base < n; base += kStep) {
    const int x0 = base + 8 * tid;
    float S[U][8];
    pool(x0, S);
#pragma unroll
    for (int g = 0; g < U; ++g) {
      const int x = x0 + g * NT * 8;
      unsigned mA = 0u, mC = 0u;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const unsigned d = __float_as_uint(S[g][e]) >> 19;
        if (x + e < n) {
          if (d > binHi) mA |= 1u << e;
          else if (d >= binLo) mC |= 1u << e;
        }
      }
      const int ca = __popc(mA), cc = __popc(mC);
      int ia = ca, ic = cc;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const int ya = __shfl_up_sync(0xffffffffu, ia, off);
        const int yc = __shfl_up_sync(0xffffffffu, ic, off);
        if (lane >= off) {
          ia += ya;
          ic += yc;
        }
      }
      int baseA = 0, baseC = 0;
      if (lane == 31) {
        if (ia > 0) baseA = atomicAdd(&cnt[0], ia);
        if (ic > 0) baseC = atomicAdd(&cnt[3], ic);
      }
      baseA = __shfl_sync(0xffffffffu, baseA, 31) + ia - ca;
      baseC = __shfl_sync(0xffffffffu, baseC, 31) + ic - cc;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        if (mA & (1u << e)) r.out[baseA++] = x + e;
        if (mC & (1u << e)) {
          r.cand[baseC] = x + e;
          r.candVal[baseC++] = S[g][e];
        }
      }
    }
  }
  __syncthreads();
  // The row's intermediate is consumed: drop its lines from L2 (no write-back).
  l2_discard_range(u, sizeof(__half) * static_cast<size_t>(GS) * nU, tid, NT);
  l2_discard_range(m16, sizeof(float) * static_cast<size_t>(GS) * (nU / 16), tid, NT);
  __threadfence();
  __syncthreads();
  const int C = cnt[3];
  auto listed = [&](int i) -> unsigned { return __float_as_uint(__ldcg(r.candVal + i)); };
  u16_window_finish<T, D, GS, NT>(listed, C, krem, r.cand, r.candVal, r.out, cnt, sh, res, Mh, iL,
                                  static_cast<const T*>(r.kRows), static_cast<const T*>(r.qRows), r.qscale);
}

}  // namespace kascade
