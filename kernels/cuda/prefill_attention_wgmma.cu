// Prefill attention, variant v3: Hopper wgmma (warpgroup MMA) for both products, otherwise the v1 design.
// Selected by KASCADE_PREFILL_DENSE=v3 (dense, dense + statistics, statistics) and KASCADE_PREFILL_SPARSE=v3
// (sparse, group sizes 2, 4, 8; g = 1 stays on v1); v1 stays the default until parity and timing on the
// H200 back it.
//
// Kernel prefill_attn_wgmma_kernel<T, D, GS, MODE, WARPS>, WARPS = 4 (one warpgroup, 64 query rows, 16 per
// warp; 3 blocks per SM, 2-stage K/V ring) or 8 (attention variant v4, dense modes and sparse at g >= 4: two
// warpgroups, 128 rows sharing each K/V step, half the L2 -> shared memory traffic per query; 1 block per SM,
// so a 3-stage ring: 96 KB):
//   - dense modes: grid (ceil(queries / (16 WARPS)), heads, batch), consecutive queries of one head, heaviest
//     blocks first; every warp takes part in every step (wgmma is warpgroup-wide), masks only on steps that
//     cross its diagonal.
//   - sparse: grid (tiles x 2GS / 4, kvHeads, batch), a (tile, KV head)'s blocks adjacent; warp = 16-row half of the tile for one query head of
//     the group (the A operand comes from each warp's registers, so the warpgroup's rows may belong to
//     different heads: they share the KV head's gathered rows). Key list as in v1.
//   Per 64-key step: S = Q K^T as D/16 wgmma.m64n64k16 (A = Q fragments in registers, B = K from shared
//   memory), online softmax in registers exactly as v1 (log2 domain, FMA + ex2.approx), then O += P V as
//   4 wgmma.m64n{D}k16 (A = P in registers, B = V from shared memory, transposed: N-major).
//   Shared memory: K and V tiles in the no-swizzle "interleave" layout of 8 x 16-byte core matrices
//   (core matrix (row group rg, 16-byte column chunk cc) at rg * D * 16 + cc * 128 bytes), filled by
//   16-byte cp.async (8 consecutive threads write one 128-byte core matrix). Descriptors: K as the K-major B
//   of S (leading = 128 B to the next 8 columns, stride = D * 16 B to the next 8 keys; the kc-th 16-column
//   slice starts kc * 256 B in); V as the N-major B of P V (leading = D * 16 B to the next 8 keys, stride =
//   128 B to the next 8 columns; the kk-th 16-key slice starts kk * 32 * D B in). 2 stages (3 with two
//   warpgroups): 64 KB at D = 128
//   (32 KB statistics-only) + 512 B of key positions. Writes by cp.async become visible to the tensor
//   cores' async proxy through fence.proxy.async before the block barrier.
#include <cstdio>

#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

// K/V ring stages: 2 with one warpgroup (3 blocks per SM hide the latency), 3 with two (one block per SM).
__host__ __device__ constexpr int wg_stages(int warps) { return warps == 8 ? 3 : 2; }

template <typename T, int D, int MODE, int NS>
constexpr size_t wg_smem_bytes() {
  return static_cast<size_t>((MODE == kStats ? 1 : 2) * NS * kKeys * D) * 2 + NS * kKeys * sizeof(int);
}

template <typename T, int D, int GS, int MODE, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, WARPS == 4 ? 3 : 1)
    prefill_attn_wgmma_kernel(KascadePrefillShape s, PrefillArgs a) {
  constexpr bool kWithV = MODE != kStats;
  constexpr bool kSparseMode = MODE == kSparse;
  constexpr bool kWriteStats = MODE == kDenseStats || MODE == kStats;
  static_assert(WARPS == 4 || (WARPS == 8 && (MODE != kSparse || GS >= 4)), "one or two warpgroups");
  constexpr int KC = D / 16;
  constexpr int NB = D / 8;
  constexpr int NT = WARPS * 32;
  constexpr int CPR = D / 8;          // 16-byte chunks per row
  constexpr int TILE = kKeys * D;     // elements of one stage of K (or V)
  constexpr uint32_t RG = D * 16;     // bytes between 8-row groups
  constexpr int NS = wg_stages(WARPS);

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + NS * TILE;
  int* posS = reinterpret_cast<int*>(Ks + (kWithV ? 2 : 1) * NS * TILE);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;

  int h, j, q0w, listLen, cnt = 0, tileStart = 0;
  const int* idx = nullptr;
  if constexpr (kSparseMode) {
    constexpr int BPT = 2 * GS / WARPS;
    const int tiles = tiles_of(s);
    // The BPT blocks of one (tile, KV head) are adjacent in launch order: they gather the same rows (L2).
    const int t = tiles - 1 - static_cast<int>(blockIdx.x) / BPT;
    j = blockIdx.y;
    const int rbg = (static_cast<int>(blockIdx.x) % BPT) * WARPS + warp;
    h = j * GS + (rbg >> 1);
    q0w = t * kT + (rbg & 1) * 16;
    tileStart = s.queryStart + t * kT;
    const int diag = min(kT, n - tileStart);
    cnt = min(max(__ldg(a.counts + t), 0), a.kMax);
    idx = a.indices + ((static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * tiles + t) * a.kMax;
    listLen = cnt + diag;
  } else {
    const int qb = gridDim.x - 1 - blockIdx.x;
    h = blockIdx.y;
    j = h / (H / G);
    q0w = qb * (16 * WARPS) + warp * 16;
    listLen = min(n, s.queryStart + (qb + 1) * 16 * WARPS);
  }
  const int pos0 = s.queryStart + q0w + row, pos1 = pos0 + 8;
  const int qi0 = q0w + row, qi1 = qi0 + 8;
  const float qscale = s.scale * kLog2e;

  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);

  uint32_t qa[KC][4];
  {
    const T* q0p = static_cast<const T*>(a.q) + (qBase + qi0) * D;
    const T* q1p = static_cast<const T*>(a.q) + (qBase + qi1) * D;
#pragma unroll
    for (int kc = 0; kc < KC; ++kc) {
      qa[kc][0] = qi0 < Q ? ld32g(q0p + kc * 16 + quad * 2) : 0u;
      qa[kc][1] = qi1 < Q ? ld32g(q1p + kc * 16 + quad * 2) : 0u;
      qa[kc][2] = qi0 < Q ? ld32g(q0p + kc * 16 + 8 + quad * 2) : 0u;
      qa[kc][3] = qi1 < Q ? ld32g(q1p + kc * 16 + 8 + quad * 2) : 0u;
    }
  }

  auto list_pos = [&](int li) -> int {
    if (li >= listLen) return -1;
    if constexpr (kSparseMode) {
      if (li < cnt) {
        const int p = __ldg(idx + li);
        return (p >= 0 && p < tileStart) ? p : -1;
      }
      return tileStart + (li - cnt);
    }
    return li;
  };
  const int steps = (listLen + kKeys - 1) / kKeys;
  auto issue = [&](int i) {
    if (i < steps) {
      const int st = i % NS;
      for (int c = tid; c < kKeys * CPR; c += NT) {
        const int r8 = c & 7, rest = c >> 3;
        const int cc = rest % CPR, rg = rest / CPR;
        const int r = rg * 8 + r8;
        const int p = list_pos(i * kKeys + r);
        if (cc == 0) posS[st * kKeys + r] = p;
        const size_t off = static_cast<size_t>(p < 0 ? 0 : p) * D + cc * 8;
        const int dst = st * TILE + il_offset<D>(r, cc);
        cp_async16(Ks + dst, kg + off, p < 0 ? 0 : 16);
        if constexpr (kWithV) cp_async16(Vs + dst, vg + off, p < 0 ? 0 : 16);
      }
    }
    cp_async_commit();
  };

  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float acc[kWithV ? NB : 1][4];
#pragma unroll
  for (int nb = 0; nb < (kWithV ? NB : 1); ++nb) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.f;

#pragma unroll
  for (int p = 0; p < NS - 1; ++p) issue(p);
  for (int i = 0; i < steps; ++i) {
    issue(i + NS - 1);
    cp_async_wait<NS - 1>();
    fence_proxy_async();
    __syncthreads();
    const int st = i % NS;
    const int kFirst = i * kKeys;
    bool needMask = true;
    if constexpr (!kSparseMode) {
      const int wMin = s.queryStart + q0w;
      needMask = kFirst + kKeys - 1 > wMin || kFirst + kKeys > listLen;
    }
    float sc[8][4];
    {
      const T* ks = Ks + st * TILE;
      fence();
#pragma unroll
      for (int kc = 0; kc < KC; ++kc)
        wgmma_m64n64k16_rs<0>(&sc[0][0], qa[kc], smem_desc(ks + kc * 128, 128, RG), kc > 0 ? 1 : 0, T{});
      commit();
      wait0();
      pin<32>(&sc[0][0]);
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (needMask) {
          int p;
          if constexpr (kSparseMode) {
            p = posS[st * kKeys + nb * 8 + quad * 2 + e];
          } else {
            p = kFirst + nb * 8 + quad * 2 + e;
            if (p >= listLen) p = -1;
          }
          if (p < 0 || p > pos0) sc[nb][e] = -INFINITY;
          if (p < 0 || p > pos1) sc[nb][2 + e] = -INFINITY;
        }
        mx0 = fmaxf(mx0, sc[nb][e]);
        mx1 = fmaxf(mx1, sc[nb][2 + e]);
      }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0 * qscale), mn1 = fmaxf(m1, mx1 * qscale);
    const float al0 = mn0 == -INFINITY ? 1.f : ex2f(m0 - mn0);
    const float al1 = mn1 == -INFINITY ? 1.f : ex2f(m1 - mn1);
    const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
    float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        sc[nb][e] = ex2f(fmaf(sc[nb][e], qscale, -b0));
        sc[nb][2 + e] = ex2f(fmaf(sc[nb][2 + e], qscale, -b1));
        rs0 += sc[nb][e];
        rs1 += sc[nb][2 + e];
      }
    l0 = l0 * al0 + rs0;
    l1 = l1 * al1 + rs1;
    m0 = mn0;
    m1 = mn1;
    if constexpr (kWithV) {
      uint32_t pa[4][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        pa[kk][0] = pack_2<T>(sc[2 * kk][0], sc[2 * kk][1]);
        pa[kk][1] = pack_2<T>(sc[2 * kk][2], sc[2 * kk][3]);
        pa[kk][2] = pack_2<T>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
        pa[kk][3] = pack_2<T>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
      }
      if (__any_sync(0xffffffffu, al0 != 1.f || al1 != 1.f)) {
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          acc[nb][0] *= al0;
          acc[nb][1] *= al0;
          acc[nb][2] *= al1;
          acc[nb][3] *= al1;
        }
      }
      const T* vs = Vs + st * TILE;
      pin<NB * 4>(&acc[0][0]);
      fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if constexpr (D == 128)
          wgmma_m64n128k16_rs<1>(&acc[0][0], pa[kk], smem_desc(vs + kk * 16 * D, RG, 128), 1, T{});
        else
          wgmma_m64n64k16_rs<1>(&acc[0][0], pa[kk], smem_desc(vs + kk * 16 * D, RG, 128), 1, T{});
      }
      commit();
      wait0();
      pin<NB * 4>(&acc[0][0]);
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if constexpr (kWriteStats) {
    if (quad == 0) {
      if (qi0 < Q) {
        a.stats[(qBase + qi0) * 2] = m0;
        a.stats[(qBase + qi0) * 2 + 1] = l0;
      }
      if (qi1 < Q) {
        a.stats[(qBase + qi1) * 2] = m1;
        a.stats[(qBase + qi1) * 2 + 1] = l1;
      }
    }
  }
  if constexpr (kWithV) {
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    T* o = static_cast<T*>(a.out);
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      if (qi0 < Q)
        *reinterpret_cast<uint32_t*>(o + (qBase + qi0) * D + nb * 8 + quad * 2) =
            pack_2<T>(acc[nb][0] * inv0, acc[nb][1] * inv0);
      if (qi1 < Q)
        *reinterpret_cast<uint32_t*>(o + (qBase + qi1) * D + nb * 8 + quad * 2) =
            pack_2<T>(acc[nb][2] * inv1, acc[nb][3] * inv1);
    }
  }
}

template <typename T, int D, int GS, int MODE, int WARPS = 4>
cudaError_t launch_wgmma_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = wg_smem_bytes<T, D, MODE, wg_stages(WARPS)>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_attn_wgmma_kernel<T, D, GS, MODE, WARPS>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  dim3 grid;
  if constexpr (MODE == kSparse) {
    grid = dim3(tiles_of(s) * (2 * GS / WARPS), s.kvHeads, s.batch);
  } else {
    grid = dim3(ceil_div(s.queries, 16 * WARPS), s.heads, s.batch);
  }
  prefill_attn_wgmma_kernel<T, D, GS, MODE, WARPS><<<grid, WARPS * 32, smem, st>>>(s, a);
  return cudaGetLastError();
}

}  // namespace

bool prefill_wgmma_supports(const KascadePrefillShape& s, PrefillMode mode) {
  return mode != kSparse || s.heads / s.kvHeads >= 2;
}

cudaError_t launch_prefill_attention_wgmma(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                           cudaStream_t st, bool twoWarpgroups) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      switch (mode) {
        case kDense:
          return twoWarpgroups ? launch_wgmma_t<T, D, 1, kDense, 8>(s, a, st) : launch_wgmma_t<T, D, 1, kDense>(s, a, st);
        case kDenseStats:
          return twoWarpgroups ? launch_wgmma_t<T, D, 1, kDenseStats, 8>(s, a, st)
                               : launch_wgmma_t<T, D, 1, kDenseStats>(s, a, st);
        case kStats:
          return twoWarpgroups ? launch_wgmma_t<T, D, 1, kStats, 8>(s, a, st) : launch_wgmma_t<T, D, 1, kStats>(s, a, st);
        case kSparse:
          switch (g) {
            case 2: return launch_wgmma_t<T, D, 2, kSparse>(s, a, st);
            case 4:
              return twoWarpgroups ? launch_wgmma_t<T, D, 4, kSparse, 8>(s, a, st)
                                   : launch_wgmma_t<T, D, 4, kSparse>(s, a, st);
            case 8:
              return twoWarpgroups ? launch_wgmma_t<T, D, 8, kSparse, 8>(s, a, st)
                                   : launch_wgmma_t<T, D, 8, kSparse>(s, a, st);
            default: return cudaErrorInvalidValue;
          }
      }
      return cudaErrorInvalidValue;
    });
  });
}

}  // namespace pf
}  // namespace kascade
