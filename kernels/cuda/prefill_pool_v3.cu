// The anchors' pooling pass, variant v3 (KASCADE_PREFILL_POOL=v3): v2 (prefill_pool_wgmma.cu) with the
// tensor cores and the exponentials overlapped inside one block. v2 waits for each step's S^T = K Q^T
// before its exponentials, so per block the tensor pipe and the MUFU (ex2) take turns; at g = 4 a step
// is 8 wgmma m64n128k16 (about 512 tensor cycles of an SM) against 8192 ex2 (about 512 MUFU cycles).
//
// pool_v3_kernel<T, D, GS> (GS <= 4; g = 8 runs v2): grid (tiles, pairs in this pass), 128 threads = one
// warpgroup; one block = one (sequence, KV head) pair and one query tile t starting at s_t (heaviest tiles
// first). Same output as v1 / v2: S[j,t](x) = sum over the group's g x 32 query rows of exp2(l(x) - c_row),
// c_row = M_row + log2(L_row) from the statistics, for x < s_t.
//   - Query rows in shared memory once (interleaved, prefill_wgmma.cuh), K double-buffered in 64-key steps
//     (16-byte cp.async; the copy of step i + 2 is issued once step i's wgmma is done).
//   - Two accumulator sets: while the exponentials of step i run on one, the wgmma of step i + 1 fills the
//     other (issued before them, waited for after them); the copy of step i + 2 is in flight.
//   Shared memory: R x D x 2 B (Q) + 2 x 64 x D x 2 B (K) + 4 R B: 64.5 KB at g = 4, D = 128 (three blocks
//   per SM, 160 registers per thread).
#include <cstdio>
#include <type_traits>

#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

// K ring depth: 2 stages (the copy of step i + 2 issued at step i).
constexpr int kPoolStages = 2;

template <int D, int GS, bool STATS, bool SW>
constexpr size_t pool3_smem_bytes() {
  return static_cast<size_t>(GS * kT * D + kPoolStages * kKeys * D) * 2 +
         static_cast<size_t>(GS * kT) * (STATS ? 9 : 1) * sizeof(float) + (SW ? 1024 : 0);
}

template <typename T, int NR>
__device__ __forceinline__ void mma3_ss(float* d, uint64_t a, uint64_t b, int scaleD) {
  if constexpr (NR == 128)
    wgmma_m64n128k16_ss(d, a, b, scaleD, T{});
  else if constexpr (NR == 64)
    wgmma_m64n64k16_ss(d, a, b, scaleD, T{});
  else
    wgmma_m64n32k16_ss(d, a, b, scaleD, T{});
}

// 128-byte swizzled K-major layout (pool v5 / v6): a [rows][D] 16-bit tile as D / 64 regions of [rows][64]
// (128-byte rows, rows contiguous), the 16-byte chunk c8 of row r stored at chunk c8 ^ (r % 8); every
// region starts 1024-byte aligned. Element offset of (row r, 16-byte chunk cc).
__device__ __forceinline__ int sw128_offset(int rows, int r, int cc) {
  return (cc >> 3) * rows * 64 + r * 64 + (((cc & 7) ^ (r & 7)) << 3);
}
// Descriptor of the k-th 16-column slice of such a tile (K-major, swizzle mode 1 = 128 B; leading offset
// unused, stride 1024 B between 8-row groups).
__device__ __forceinline__ uint64_t sw128_desc(const void* tile, int rows, int kc) {
  const char* p = static_cast<const char*>(tile) + (kc >> 2) * rows * 128 + (kc & 3) * 32;
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// (Session 4's pools v9-v11, several query tiles per block sharing each K step, lost and are gone.)
template <typename T, int D, int GS, bool STATS, bool SW>
__global__ void __launch_bounds__(128, STATS ? 2 : 3)
    pool_v3_kernel(KascadePrefillShape s, const void* __restrict__ qp, const void* __restrict__ kp,
                   const float* __restrict__ stats, float* __restrict__ pooled, int pairBase, size_t perPair,
                   int denseLayout) {
  constexpr int R = GS * kT;
  static_assert(R <= 128, "pool v3 takes at most 128 query rows per block (g <= 4)");
  constexpr int NR = R;
  constexpr int NA = NR / 2;  // accumulator floats per thread
  constexpr int NC = NR / 4;  // query-row columns per thread (nb, e)
  constexpr int KC = D / 16;
  constexpr int CPR = D / 8;
  constexpr int TILE = kKeys * D;
  constexpr uint32_t RG = D * 16;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // Swizzled tiles need 1024-byte aligned regions: the base is rounded up (1 KB extra is allocated).
  unsigned char* smem_base =
      SW ? smem_raw + ((1024 - (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023)) & 1023) : smem_raw;
  T* Qs = reinterpret_cast<T*>(smem_base);  // the tile's query rows, then the K ring
  T* Ks = Qs + R * D;
  constexpr int STG = kPoolStages;
  float* Cs = reinterpret_cast<float*>(Ks + STG * TILE);
  float* Red = Cs + R;  // STATS: [4 warps][R][2] partial (max, sum) per query row

  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);  // heaviest tiles first
  const int pair = pairBase + blockIdx.y, b = pair / G, j = pair % G;
  const int st = s.queryStart + t * kT;
  if (st == 0) return;
  float* rowp = denseLayout ? pooled + (static_cast<size_t>(pair) * tiles + t) * n
                            : pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t);
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;

  // Query rows rr = hh * 32 + i (query head j * g + hh, query t * 32 + i), interleaved, and their constants.
  for (int c = tid; c < R * CPR; c += 128) {
    const int r8 = c & 7, rest = c >> 3;
    const int cc = rest % CPR, rr = (rest / CPR) * 8 + r8;
    const int hh = rr / kT, qi = t * kT + rr % kT;
    const bool valid = qi < Q;
    const size_t qrow = (static_cast<size_t>(b) * H + j * GS + hh) * static_cast<size_t>(Q) + (valid ? qi : 0);
    cp_async16(Qs + (SW ? sw128_offset(R, rr, cc) : il_offset<D>(rr, cc)), static_cast<const T*>(qp) + qrow * D + cc * 8,
               valid ? 16 : 0);
  }
  if constexpr (!STATS) {
    for (int rr = tid; rr < R; rr += 128) {
      const int hh = rr / kT, qi = t * kT + rr % kT;
      if (qi < Q) {
        const size_t qrow = (static_cast<size_t>(b) * H + j * GS + hh) * static_cast<size_t>(Q) + qi;
        Cs[rr] = stats[qrow * 2] + log2f(stats[qrow * 2 + 1]);
      } else {
        Cs[rr] = INFINITY;
      }
    }
  }

  const T* kg = static_cast<const T*>(kp) + (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const float qscale = s.scale * kLog2e;
  auto mma_step = [&](float* acc, int i) {
    const T* ks = Ks + (i % STG) * TILE;
    pin<NA>(acc);
    fence();
#pragma unroll
    for (int kc = 0; kc < KC; ++kc)
      if constexpr (SW)
        mma3_ss<T, NR>(acc, sw128_desc(ks, kKeys, kc), sw128_desc(Qs, R, kc), kc > 0 ? 1 : 0);
      else
        mma3_ss<T, NR>(acc, smem_desc(ks + kc * 128, 128, RG), smem_desc(Qs + kc * 128, 128, RG), kc > 0 ? 1 : 0);
    commit();
    pin<NA>(acc);
  };

  // One pipelined sweep over keys 0 .. keyLimit - 1 in 64-key steps, calling step_fn(acc, i) on each step's
  // S^T = K Q^T. Iteration i: K(i + 1) lands, the copy of step i + 2 goes out (its stage's previous user,
  // step i, had its wgmma waited for by every warp before the barrier), the wgmma of step i + 1 is issued,
  // then step i's function runs while it works, and the iteration ends waiting for it (nothing stays in
  // flight across iterations: ptxas serialises the wgmma when a wait_group 1 leaves one in flight over the
  // loop's back edge). The step count is made even, so the two accumulator sets alternate without a branch;
  // the extra step's wgmma reads a stale stage and the step functions ignore keys >= keyLimit.
  // Query rows (group 0 of the first sweep) are in shared memory once the first barrier has passed.
  auto sweep = [&](int keyLimit, auto&& step_fn) {
    const int steps = (keyLimit + kKeys - 1) / kKeys;
    auto issue = [&](int i) {
      if (i < steps) {
        T* dst = Ks + (i % STG) * TILE;
        for (int c = tid; c < kKeys * CPR; c += 128) {
          const int r8 = c & 7, rest = c >> 3;
          const int cc = rest % CPR, r = (rest / CPR) * 8 + r8;
          const int x = i * kKeys + r;
          cp_async16(dst + (SW ? sw128_offset(kKeys, r, cc) : il_offset<D>(r, cc)),
                     kg + static_cast<size_t>(x < keyLimit ? x : 0) * D + cc * 8,
                     x < keyLimit ? 16 : 0);
        }
      }
      cp_async_commit();
    };
    float accA[NA], accB[NA];
    issue(0);
    issue(1);
    cp_async_wait<STG - 1>();
    fence_proxy_async();
    __syncthreads();
    mma_step(accA, 0);
    wait0();
    pin<NA>(accA);
    auto body = [&](auto parity, int i) {
      float* cur = parity.value == 0 ? accA : accB;
      float* nxt = parity.value == 0 ? accB : accA;
      cp_async_wait<STG - 2>();  // K(i + 1); with 3 stages K(i + 2) may still be in flight
      fence_proxy_async();
      __syncthreads();
      issue(i + STG);  // into step i's stage (its wgmma was waited for before the barrier)
      mma_step(nxt, i + 1);
      step_fn(cur, i);  // cur was completed by the previous iteration's wait
      wait0();          // step i + 1's wgmma (it ran during step_fn above)
      pin<NA>(nxt);
    };
    const int stepsEven = steps + (steps & 1);
#pragma unroll 1
    for (int i = 0; i < stepsEven; i += 2) {
      body(std::integral_constant<int, 0>{}, i);
      body(std::integral_constant<int, 1>{}, i + 1);
    }
    wait0();
    cp_async_wait<0>();
  };

  if constexpr (STATS) {
    // Statistics sweep (replaces the anchor's separate statistics pass): for every query row, its full
    // causal softmax over keys 0 .. s_t + i (the diagonal tile included) as a running (max, sum) per thread
    // and column, in the log2 domain. The max is lazy: the sum is rescaled only when a score passes the held
    // max by more than 8 (exp2 of at most 2^8 per term keeps the f32 sums exact enough), so most steps cost
    // one ex2 per score, as in the pooling sweep.
    float mx[NC], sm[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      mx[c] = -INFINITY;
      sm[c] = 0.f;
    }
    const int statLimit = min(st + kT, n);
    sweep(statLimit, [&](const float* acc, int i) {
      const int x0 = i * kKeys + warp * 16 + row, x1 = x0 + 8;
      const bool masked = i * kKeys + kKeys > st;  // the step reaches the diagonal tile (or past n)
      float v0[NC], v1[NC];
      bool grow = false;
#pragma unroll
      for (int nb = 0; nb < NR / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = nb * 2 + e;
          float a0 = acc[nb * 4 + e] * qscale, a1 = acc[nb * 4 + 2 + e] * qscale;
          if (masked) {
            const int qpos = st + ((nb * 8 + quad * 2 + e) & (kT - 1));
            if (x0 > qpos || x0 >= statLimit) a0 = -INFINITY;
            if (x1 > qpos || x1 >= statLimit) a1 = -INFINITY;
          }
          v0[c] = a0;
          v1[c] = a1;
          grow = grow || fmaxf(a0, a1) > mx[c] + 8.f;
        }
      if (grow) {
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          const float mn = fmaxf(mx[c], fmaxf(v0[c], v1[c]));
          if (mn > mx[c]) {
            sm[c] = mx[c] == -INFINITY ? 0.f : sm[c] * ex2f(mx[c] - mn);
            mx[c] = mn;
          }
        }
      }
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const float base = mx[c] == -INFINITY ? 0.f : mx[c];
        sm[c] += ex2f(v0[c] - base) + ex2f(v1[c] - base);
      }
    });
    // Merge the (max, sum) pairs of a column over the warp's 8 key rows, then over the 4 warps.
#pragma unroll
    for (int c = 0; c < NC; ++c) {
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, mx[c], o), s2 = __shfl_xor_sync(0xffffffffu, sm[c], o);
        const float mn = fmaxf(mx[c], m2);
        const float base = mn == -INFINITY ? 0.f : mn;
        sm[c] = (mx[c] == -INFINITY ? 0.f : sm[c] * ex2f(mx[c] - base)) + (m2 == -INFINITY ? 0.f : s2 * ex2f(m2 - base));
        mx[c] = mn;
      }
    }
    if (row == 0) {
#pragma unroll
      for (int nb = 0; nb < NR / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int rr = nb * 8 + quad * 2 + e;
          Red[(warp * R + rr) * 2] = mx[nb * 2 + e];
          Red[(warp * R + rr) * 2 + 1] = sm[nb * 2 + e];
        }
    }
    __syncthreads();
    for (int rr = tid; rr < R; rr += 128) {
      float m = -INFINITY;
      for (int w = 0; w < 4; ++w) m = fmaxf(m, Red[(w * R + rr) * 2]);
      float l = 0.f;
      for (int w = 0; w < 4; ++w) {
        const float mw = Red[(w * R + rr) * 2];
        if (mw != -INFINITY) l += Red[(w * R + rr) * 2 + 1] * ex2f(mw - m);
      }
      const int qi = t * kT + rr % kT;
      Cs[rr] = qi < Q && l > 0.f ? m + log2f(l) : INFINITY;
    }
    __syncthreads();  // Cs ready; every warp is done with the stages
  }

  // Pooling sweep over keys 0 .. s_t - 1.
  sweep(st, [&](const float* acc, int i) {
    float p0, p1;
    pooled_pair<NR / 8>(acc, Cs, qscale, quad, p0, p1);
    const int x0 = i * kKeys + warp * 16 + row, x1 = x0 + 8;
    if (quad == 0) {
      if (x0 < st) rowp[x0] = p0;
      if (x1 < st) rowp[x1] = p1;
    }
  });
}

template <typename T, int D, int GS, bool STATS, bool SW>
cudaError_t launch_pool3_t(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                           float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                           cudaStream_t st) {
  constexpr size_t smem = pool3_smem_bytes<D, GS, STATS, SW>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(pool_v3_kernel<T, D, GS, STATS, SW>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  pool_v3_kernel<T, D, GS, STATS, SW><<<dim3(tiles_of(s), pairs), 128, smem, st>>>(s, q, k, stats, pooled, pairBase,
                                                                                   perPair, denseLayout);
  return cudaGetLastError();
}

}  // namespace

bool pool_v3_supports(const KascadePrefillShape& s) { return s.heads / s.kvHeads <= 4; }

cudaError_t launch_pool_v3(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                           float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                           bool fusedStats, bool swizzle, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  if (g > 4) {
    if (fusedStats) return cudaErrorInvalidValue;  // callers check pool_v3_supports first
    return launch_pool_wgmma(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, st);
  }
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        if constexpr (GS > 4) {
          return cudaErrorInvalidValue;
        } else {
          constexpr int G4 = GS > 4 ? 4 : GS;  // (never above 4 here; keeps the templates in range)
          if (fusedStats)
            return swizzle ? launch_pool3_t<T, D, G4, true, true>(s, q, k, stats, pooled, pairBase, pairs, perPair,
                                                                  denseLayout, st)
                           : launch_pool3_t<T, D, G4, true, false>(s, q, k, stats, pooled, pairBase, pairs, perPair,
                                                                   denseLayout, st);
          return swizzle ? launch_pool3_t<T, D, G4, false, true>(s, q, k, stats, pooled, pairBase, pairs, perPair,
                                                                 denseLayout, st)
                         : launch_pool3_t<T, D, G4, false, false>(s, q, k, stats, pooled, pairBase, pairs, perPair,
                                                                  denseLayout, st);
        }
      });
    });
  });
}

}  // namespace pf
}  // namespace kascade
