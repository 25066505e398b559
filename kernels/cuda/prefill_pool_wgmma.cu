// The anchors' pooling pass on Hopper wgmma (pool variant v2, the default since the H200 run of af4b1c8;
// KASCADE_PREFILL_POOL=v1 selects the mma.sync pool_prefill_kernel in prefill_anchor.cu).
//
// pool_wgmma_kernel<T, D, GS>: grid (tiles, pairs in this pass), 128 threads = one warpgroup; one block =
// one (sequence, KV head) pair and one query tile t starting at s_t (heaviest tiles first). Same output as
// v1: S[j,t](x) = sum over the group's g x 32 query rows of exp2(l(x) - M_row) / L_row for x < s_t.
//   - The tile's query rows (R = 32 g) sit in shared memory once, interleaved (prefill_wgmma.cuh), with one
//     constant per row c = M + log2(L) (rows past the chunk: +inf, so they pool 0), so a score costs one
//     FMA, one ex2.approx and one add: exp2(l(x) - M) / L = exp2(l(x) - c).
//   - Keys 0 .. s_t - 1 in 64-key steps, K double-buffered by 16-byte cp.async (interleaved).
//   - Per step: S^T = K Q^T as wgmma.m64nNk16 over D / 16 slices, A = the K step (M = 64 keys: warp w has
//     keys 16w .. 16w + 15), B = N = min(R, 128) query rows (two passes at g = 8), both from shared memory;
//     each thread sums its two keys' row over its columns, the quad adds up, quad 0 writes.
//   Shared memory: R x D x 2 B (Q) + 2 x 64 x D x 2 B (K) + 4 R B: 64.5 KB at g = 4, D = 128.
#include <cstdio>

#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

template <int D, int GS>
constexpr size_t poolwg_smem_bytes() {
  return static_cast<size_t>(GS * kT * D + 2 * kKeys * D) * 2 + static_cast<size_t>(GS * kT) * sizeof(float);
}

template <typename T, int NR>
__device__ __forceinline__ void mma_ss(float* d, uint64_t a, uint64_t b, int scaleD) {
  if constexpr (NR == 128)
    wgmma_m64n128k16_ss(d, a, b, scaleD, T{});
  else if constexpr (NR == 64)
    wgmma_m64n64k16_ss(d, a, b, scaleD, T{});
  else
    wgmma_m64n32k16_ss(d, a, b, scaleD, T{});
}

template <typename T, int D, int GS>
__global__ void __launch_bounds__(128, 2) pool_wgmma_kernel(KascadePrefillShape s, const void* __restrict__ qp,
                                                              const void* __restrict__ kp,
                                                              const float* __restrict__ stats,
                                                              float* __restrict__ pooled, int pairBase,
                                                              size_t perPair, int denseLayout) {
  constexpr int R = GS * kT;
  constexpr int NR = R < 128 ? R : 128;  // query rows per wgmma (N)
  constexpr int PASSES = R / NR;
  constexpr int KC = D / 16;
  constexpr int CPR = D / 8;
  constexpr int TILE = kKeys * D;
  constexpr uint32_t RG = D * 16;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = Qs + R * D;
  float* Cs = reinterpret_cast<float*>(Ks + 2 * TILE);

  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y, b = pair / G, j = pair % G;
  const int st = s.queryStart + t * kT;
  if (st == 0) return;
  float* rowp = denseLayout ? pooled + (static_cast<size_t>(pair) * tiles + t) * n
                            : pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;

  // Query rows rr = hh * 32 + i (query head j * g + hh, query t * 32 + i), interleaved, and their constants.
  for (int c = tid; c < R * CPR; c += 128) {
    const int r8 = c & 7, rest = c >> 3;
    const int cc = rest % CPR, rr = (rest / CPR) * 8 + r8;
    const int hh = rr / kT, qi = t * kT + rr % kT;
    const bool valid = qi < Q;
    const size_t qrow = (static_cast<size_t>(b) * H + j * GS + hh) * static_cast<size_t>(Q) + (valid ? qi : 0);
    cp_async16(Qs + il_offset<D>(rr, cc), static_cast<const T*>(qp) + qrow * D + cc * 8, valid ? 16 : 0);
  }
  for (int rr = tid; rr < R; rr += 128) {
    const int hh = rr / kT, qi = t * kT + rr % kT;
    if (qi < Q) {
      const size_t qrow = (static_cast<size_t>(b) * H + j * GS + hh) * static_cast<size_t>(Q) + qi;
      Cs[rr] = stats[qrow * 2] + log2f(stats[qrow * 2 + 1]);
    } else {
      Cs[rr] = INFINITY;
    }
  }

  const T* kg = static_cast<const T*>(kp) + (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const int steps = (st + kKeys - 1) / kKeys;
  auto issue = [&](int i) {
    if (i < steps) {
      T* dst = Ks + (i & 1) * TILE;
      for (int c = tid; c < kKeys * CPR; c += 128) {
        const int r8 = c & 7, rest = c >> 3;
        const int cc = rest % CPR, r = (rest / CPR) * 8 + r8;
        const int x = i * kKeys + r;
        cp_async16(dst + il_offset<D>(r, cc), kg + static_cast<size_t>(x < st ? x : 0) * D + cc * 8,
                   x < st ? 16 : 0);
      }
    }
    cp_async_commit();
  };
  const float qscale = s.scale * kLog2e;
  issue(0);  // with the query rows: cp.async group 0
  for (int i = 0; i < steps; ++i) {
    issue(i + 1);
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    const T* ks = Ks + (i & 1) * TILE;
    float p0 = 0.f, p1 = 0.f;
#pragma unroll
    for (int ps = 0; ps < PASSES; ++ps) {
      float acc[NR / 8][4];
      fence();
#pragma unroll
      for (int kc = 0; kc < KC; ++kc)
        mma_ss<T, NR>(&acc[0][0], smem_desc(ks + kc * 128, 128, RG), smem_desc(Qs + ps * NR * D + kc * 128, 128, RG),
                      kc > 0 ? 1 : 0);
      commit();
      wait0();
      pin<NR / 2>(&acc[0][0]);
      // acc[nb][e]: key 16 warp + row, query row ps * NR + nb * 8 + quad * 2 + e; [2 + e]: key + 8.
#pragma unroll
      for (int nb = 0; nb < NR / 8; ++nb) {
        const float2 c = *reinterpret_cast<const float2*>(Cs + ps * NR + nb * 8 + quad * 2);
        p0 += ex2f(fmaf(acc[nb][0], qscale, -c.x)) + ex2f(fmaf(acc[nb][1], qscale, -c.y));
        p1 += ex2f(fmaf(acc[nb][2], qscale, -c.x)) + ex2f(fmaf(acc[nb][3], qscale, -c.y));
      }
    }
    p0 += __shfl_xor_sync(0xffffffffu, p0, 1);
    p0 += __shfl_xor_sync(0xffffffffu, p0, 2);
    p1 += __shfl_xor_sync(0xffffffffu, p1, 1);
    p1 += __shfl_xor_sync(0xffffffffu, p1, 2);
    const int x0 = i * kKeys + warp * 16 + row, x1 = x0 + 8;
    if (quad == 0) {
      if (x0 < st) rowp[x0] = p0;
      if (x1 < st) rowp[x1] = p1;
    }
    __syncthreads();
  }
  cp_async_wait<0>();
}

template <typename T, int D, int GS>
cudaError_t launch_poolwg_t(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                            float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                            cudaStream_t st) {
  constexpr size_t smem = poolwg_smem_bytes<D, GS>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(pool_wgmma_kernel<T, D, GS>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  pool_wgmma_kernel<T, D, GS><<<dim3(tiles_of(s), pairs), 128, smem, st>>>(s, q, k, stats, pooled, pairBase, perPair,
                                                                         denseLayout);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_pool_wgmma(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                              float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                              cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&] {
        return launch_poolwg_t<T, D, GS>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, st);
      });
    });
  });
}

}  // namespace pf
}  // namespace kascade
