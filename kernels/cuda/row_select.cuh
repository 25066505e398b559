// KASCADE_VARIANT_ROW_SELECT (bit 65536, cuda-anchor, session 5): the anchors' Top-k select inside the
// scores / layer-0 pass (attn_partial_kernel, decode_attention.cu), so the f16 intermediate never has to
// reach DRAM. Included by decode_attention.cu only (its counters are module globals of that file).
//
// Session 4 (ncu) found the anchor's scores pass at 85 % of DRAM peak with its intermediate writes and 94 %
// without: the write stream interleaved with the K read costs ~250 us at 128k batch 32, whatever its size.
// Here the pass runs on the split schedule with short splits (row_select_chunk keys: 64 splits per row at
// 128k), grid (S splits, kvHeads, batch): CTAs start in row order, so only a few (sequence, KV head) rows
// are in flight at a time. The f16 intermediate (bit 1024's u and m16) is stored evict-last in L2 and the K
// tiles are loaded evict-first, so a row's intermediate (~1.2 MB at 128k, g = 4) is still in L2 when the
// row's select reads it. The select is spread over the CTAs of later rows, in three stages per row f:
//  0. the CTA of split s of row f, after its own scores work: zeroes its share of row f's 4096-bin
//     histogram (and split 0 the row's slot counters), then counts done[0][f]; the last of them publishes
//     the heads' softmax max / sum (from the splits' (m, l)) and counts once more (S + 1);
//  A. the CTA of split s of row f + D (D rows later: f is done by then, as a rule): waits until done[0][f]
//     reaches S + 1, reads the heads' statistics, pools keys
//     [s chunk, (s + 1) chunk) of row f (S(x) = 2^-15 sum_h u_h(x) exp2(m16_h - M_h) / L_h), stores them
//     (f32, evict-last) and adds their first-digit histogram (bits 30..19) into row f's; drops that slice of
//     the intermediate from L2 without a write-back (discard.global.L2); counts done[1][f];
//  B. the CTA of split s of row f + 2D: waits for done[1][f], finds the bin b1 holding rank k and the bins
//     the exact window can reach around it, writes its slice's keys above those bins to the indices and
//     lists the bins' members (global slot counters), drops its pooled slice from L2, counts done[2][f];
//     the last of them finishes row f exactly on the list as the stream select does (select_common.cuh:
//     the window around the listed k-th score recomputed from K).
// A CTA waits only on CTAs of lower rows (lower block index), as a decoupled look-back does. Rows whose
// f + D or f + 2D lie past the grid run in a second launch (row_select_tail_kernel: virtual rows R ..
// R + 2D - 1, stages A and B only). Each counter is reset by its last reader: done[0][f] by the last
// stage-A CTA of f, done[1][f] by the last stage-B CTA, done[2][f] at the end of stage C; histograms and
// slot counters are zeroed by stage 0; so every launch (and a CUDA graph replay) starts from zero.
// Correctness does not depend on the cache policies: a line evicted early is written back and read
// from DRAM. Ties at the k-th value: any of them (order free).
#pragma once
#include "decode_attention.cuh"
#include "select_common.cuh"

namespace kascade {

__device__ unsigned g_row_select_done[3][kRowSelectMaxRows];
constexpr int kRowSelectBins = 4096;  // first digit: bits 30..19 of the pooled score (16 bins per octave)
constexpr size_t kRowSelectSmem = sizeof(unsigned) * kRowSelectBins;
constexpr int kRowSelectThreads = 128;

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
__device__ __forceinline__ void st_f4_hint(void* p, float4 v, uint64_t pol) {
  asm volatile("st.global.L2::cache_hint.v4.f32 [%0], {%1, %2, %3, %4}, %5;" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z),
               "f"(v.w), "l"(pol)
               : "memory");
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
__device__ __forceinline__ void l2_discard_range(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t lo = (a + 127) & ~static_cast<uintptr_t>(127), hi = (a + bytes) & ~static_cast<uintptr_t>(127);
  for (uintptr_t x = lo + static_cast<uintptr_t>(threadIdx.x) * 128; x < hi;
       x += static_cast<uintptr_t>(kRowSelectThreads) * 128)
    asm volatile("discard.global.L2 [%0], 128;" ::"l"(x) : "memory");
}

// Thread 0 waits until *ctr >= target (a lower row's counter), then the CTA proceeds.
__device__ __forceinline__ void row_select_wait(unsigned* ctr, unsigned target) {
  if (threadIdx.x == 0) {
    while (*reinterpret_cast<volatile unsigned*>(ctr) < target) __nanosleep(64);
    __threadfence();
  }
  __syncthreads();
}
// Counts this CTA into *ctr (after its writes); returns (to every thread) whether it was the last of `of`.
__device__ __forceinline__ bool row_select_count(unsigned* ctr, unsigned of, int* flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) *flag = atomicAdd(ctr, 1u) == of - 1u ? 1 : 0;
  __syncthreads();
  return *flag != 0;
}

// Row f's heads' softmax max and 1 / sum from its splits' (m, l) into Mh / iL (all threads call).
template <int GS>
__device__ __forceinline__ void row_select_stats(const RowSelectArgs& a, size_t bh0, float* Mh, float* iL) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int h = warp; h < GS; h += kRowSelectThreads / 32) {
    const float* ml = a.part_ml + (bh0 + h) * a.splits * 2;
    float M = -INFINITY;
    for (int s = lane; s < a.splits; s += 32) M = fmaxf(M, __ldcg(ml + 2 * s));
    M = warp_max(M);
    float L = 0.f;
    for (int s = lane; s < a.splits; s += 32) {
      const float m = __ldcg(ml + 2 * s);
      if (m != -INFINITY) L += __ldcg(ml + 2 * s + 1) * exp2f(m - M);
    }
    L = warp_sum(L);
    if (lane == 0) {
      Mh[h] = M;
      iL[h] = 1.f / L;
    }
  }
  __syncthreads();
}

// Row f's statistics as its last scores CTA published them (stage 0) into Mh / iL (all threads call).
template <int GS>
__device__ __forceinline__ void row_select_load_stats(const RowSelectArgs& a, long long f, float* Mh, float* iL) {
  if (threadIdx.x < GS) {
    const float* st = a.stats + static_cast<size_t>(f) * 2 * kMaxGroup;
    Mh[threadIdx.x] = __ldcg(st + 2 * threadIdx.x);
    iL[threadIdx.x] = __ldcg(st + 2 * threadIdx.x + 1);
  }
  __syncthreads();
}

// Stage A for row f, slice s.
template <int GS>
__device__ void row_select_stage_a(const RowSelectArgs& a, long long f, int s, unsigned* sh) {
  constexpr int NT = kRowSelectThreads;
  __shared__ float Mh[GS], iL[GS];
  __shared__ int flag;
  const int tid = threadIdx.x;
  row_select_wait(&g_row_select_done[0][f], static_cast<unsigned>(a.splits) + 1u);  // + 1: the statistics
  const int G = a.kvHeads, n = a.n, nU = u16_stride(n);
  const size_t bh0 = static_cast<size_t>(f / G) * a.heads + static_cast<size_t>(f % G) * GS;
  row_select_load_stats<GS>(a, f, Mh, iL);
  for (int i = tid; i < kRowSelectBins; i += NT) sh[i] = 0u;
  __syncthreads();
  const int x0 = s * a.chunk, x1 = min(n, x0 + a.chunk);
  const __half* u = a.u + bh0 * nU;
  const float* m16 = u16_m16(const_cast<void*>(static_cast<const void*>(a.u)), a.intermRows, n) + bh0 * (nU / 16);
  float* pooled = a.pooled + static_cast<size_t>(f) * nU;
  const uint64_t keep = l2_policy_evict_last();
  for (int x = x0 + 8 * tid; x < x1; x += 8 * NT) {
    uint4 w[GS];
    float c[GS];
#pragma unroll
    for (int h = 0; h < GS; ++h) {
      w[h] = __ldcg(reinterpret_cast<const uint4*>(u + static_cast<size_t>(h) * nU + x));
      c[h] = __ldcg(m16 + static_cast<size_t>(h) * (nU / 16) + x / 16);
    }
    float S[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int h = 0; h < GS; ++h) {
      const float cw = exp2f(c[h] - Mh[h] - kU16ScaleLog2) * iL[h];
      const uint32_t ws[4] = {w[h].x, w[h].y, w[h].z, w[h].w};
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&ws[q]));
        S[2 * q] = fmaf(v.x, cw, S[2 * q]);
        S[2 * q + 1] = fmaf(v.y, cw, S[2 * q + 1]);
      }
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (x + e < x1) {
        atomicAdd(&sh[__float_as_uint(S[e]) >> 19], 1u);
      } else {
        S[e] = 0.f;  // the row's padding: defined, never counted
      }
    }
    st_f4_hint(pooled + x, make_float4(S[0], S[1], S[2], S[3]), keep);
    st_f4_hint(pooled + x + 4, make_float4(S[4], S[5], S[6], S[7]), keep);
  }
  __syncthreads();
  unsigned* gh = a.hist + static_cast<size_t>(f) * kRowSelectBins;
  for (int i = tid; i < kRowSelectBins; i += NT)
    if (sh[i]) atomicAdd(gh + i, sh[i]);
  // The slice's intermediate is consumed: drop its lines from L2 (no write-back).
  for (int h = 0; h < GS; ++h) {
    l2_discard_range(u + static_cast<size_t>(h) * nU + x0, sizeof(__half) * static_cast<size_t>(x1 - x0));
    l2_discard_range(m16 + static_cast<size_t>(h) * (nU / 16) + x0 / 16, sizeof(float) * static_cast<size_t>((x1 - x0 + 15) / 16));
  }
  if (row_select_count(&g_row_select_done[1][f], static_cast<unsigned>(a.splits), &flag) && tid == 0)
    g_row_select_done[0][f] = 0u;  // every stage-A CTA of row f has passed its wait
}

// Stage B for row f, slice s; the row's last stage-B CTA runs stage C.
template <typename T, int D, int GS>
__device__ void row_select_stage_b(const RowSelectArgs& a, long long f, int s, unsigned* sh) {
  constexpr int NT = kRowSelectThreads;
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2];
  __shared__ int cnt[3];
  __shared__ int flag;
  const int tid = threadIdx.x, lane = tid & 31;
  row_select_wait(&g_row_select_done[1][f], static_cast<unsigned>(a.splits));
  const int G = a.kvHeads, n = a.n, nU = u16_stride(n);
  const unsigned* gh = a.hist + static_cast<size_t>(f) * kRowSelectBins;
  for (int i = tid; i < kRowSelectBins; i += NT) sh[i] = __ldcg(gh + i);
  __syncthreads();
  select_find_from_top<NT>(sh, kRowSelectBins, static_cast<unsigned>(a.topk), res);
  unsigned binLo, binHi, krem = res[1];
  u16_list_bins(res[0], sh, GS, &binLo, &binHi, &krem);
  int* st = a.state + static_cast<size_t>(f) * kStateInts;
  int* out = a.out + static_cast<size_t>(f) * a.topk;
  int* cl = a.cand + static_cast<size_t>(f) * n;
  float* cv = a.candVal + static_cast<size_t>(f) * n;
  const float* pooled = a.pooled + static_cast<size_t>(f) * nU;
  const int x0 = s * a.chunk, x1 = min(n, x0 + a.chunk);
  for (int base = x0; base < x1; base += 8 * NT) {  // uniform over the CTA: the slots shuffle across warps
    const int x = base + 8 * tid;
    unsigned mA = 0u, mC = 0u;
    float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (x < x1) {
      const float4 v0 = __ldcg(reinterpret_cast<const float4*>(pooled + x));
      const float4 v1 = __ldcg(reinterpret_cast<const float4*>(pooled + x) + 1);
      v[0] = v0.x;
      v[1] = v0.y;
      v[2] = v0.z;
      v[3] = v0.w;
      v[4] = v1.x;
      v[5] = v1.y;
      v[6] = v1.z;
      v[7] = v1.w;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const unsigned d = __float_as_uint(v[e]) >> 19;
        if (x + e < x1) {
          if (d > binHi) mA |= 1u << e;
          else if (d >= binLo) mC |= 1u << e;
        }
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
      if (ia > 0) baseA = atomicAdd(st + 0, ia);
      if (ic > 0) baseC = atomicAdd(st + 1, ic);
    }
    baseA = __shfl_sync(0xffffffffu, baseA, 31) + ia - ca;
    baseC = __shfl_sync(0xffffffffu, baseC, 31) + ic - cc;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      if (mA & (1u << e)) out[baseA++] = x + e;
      if (mC & (1u << e)) {
        cl[baseC] = x + e;
        cv[baseC++] = v[e];
      }
    }
  }
  __syncthreads();
  l2_discard_range(pooled + x0, sizeof(float) * static_cast<size_t>(x1 - x0));
  if (!row_select_count(&g_row_select_done[2][f], static_cast<unsigned>(a.splits), &flag)) return;
  // Stage C: this CTA is the row's last stage-B CTA; the others have passed their wait on done[1][f].
  __threadfence();
  if (tid == 0) g_row_select_done[1][f] = 0u;
  const size_t bh0 = static_cast<size_t>(f / G) * a.heads + static_cast<size_t>(f % G) * GS;
  row_select_load_stats<GS>(a, f, Mh, iL);
  if (tid == 0) {
    cnt[0] = __ldcg(st + 0);
    cnt[1] = 0;
    cnt[2] = 0;
  }
  __syncthreads();
  const int C = __ldcg(st + 1);
  auto listed = [&](int i) -> unsigned { return __float_as_uint(__ldcg(cv + i)); };
  const T* kg = static_cast<const T*>(a.k) + static_cast<size_t>(f) * static_cast<size_t>(a.capacity) * D;
  u16_window_finish<T, D, GS, NT>(listed, C, krem, cl, cv, out, cnt, sh, res, Mh, iL, kg,
                                  static_cast<const T*>(a.q) + bh0 * D, a.qscale);
  __syncthreads();
  if (tid == 0) g_row_select_done[2][f] = 0u;
}

// The stages a CTA of (virtual) row r, split s runs after its scores work (scored: it did row r's).
template <typename T, int D, int GS>
__device__ __noinline__ void row_select_stages(const RowSelectArgs a, long long r, int s, bool scored, unsigned* sh) {
  if (scored) {
    const int per = (kRowSelectBins + a.splits - 1) / a.splits;
    unsigned* gh = a.hist + static_cast<size_t>(r) * kRowSelectBins;
    for (int i = s * per + static_cast<int>(threadIdx.x); i < min(kRowSelectBins, (s + 1) * per); i += kRowSelectThreads)
      gh[i] = 0u;
    if (s == 0 && threadIdx.x < 2) a.state[static_cast<size_t>(r) * kStateInts + threadIdx.x] = 0;
    __shared__ int last;
    __shared__ float Mh[GS], iL[GS];
    if (row_select_count(&g_row_select_done[0][r], static_cast<unsigned>(a.splits), &last)) {
      // The row's last scores CTA: the heads' softmax statistics, once per row, then the count S + 1 that
      // lets stage A start.
      __threadfence();
      const size_t bh0 = static_cast<size_t>(r / a.kvHeads) * a.heads + static_cast<size_t>(r % a.kvHeads) * GS;
      row_select_stats<GS>(a, bh0, Mh, iL);
      if (threadIdx.x < GS) {
        float* st = a.stats + static_cast<size_t>(r) * 2 * kMaxGroup;
        st[2 * threadIdx.x] = Mh[threadIdx.x];
        st[2 * threadIdx.x + 1] = iL[threadIdx.x];
      }
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) atomicAdd(&g_row_select_done[0][r], 1u);
    }
  }
  const RowSelectStages rs = row_select_stage_rows(r, a.lag, a.rows);
  if (rs.a >= 0) row_select_stage_a<GS>(a, rs.a, s, sh);
  if (rs.b >= 0) row_select_stage_b<T, D, GS>(a, rs.b, s, sh);
}

// Virtual rows R .. R + 2D - 1 (blockIdx.y), split blockIdx.x: the stages the scores grid had no rows for.
template <typename T, int D, int GS>
__global__ void __launch_bounds__(kRowSelectThreads) row_select_tail_kernel(const RowSelectArgs a) {
  __shared__ unsigned sh[kRowSelectBins];
  row_select_stages<T, D, GS>(a, static_cast<long long>(a.rows) + blockIdx.y, static_cast<int>(blockIdx.x), false, sh);
}

cudaError_t launch_row_select_tail(const KascadeDecodeShape& s, const RowSelectArgs& a, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        row_select_tail_kernel<T, D, GS>
            <<<dim3(static_cast<unsigned>(a.splits), static_cast<unsigned>(2 * a.lag)), kRowSelectThreads, 0, st>>>(a);
        return cudaGetLastError();
      });
    });
  });
}

}  // namespace kascade
