// Prefill attention, variant v2: the same four modes as prefill_attention.cu (dense, dense + statistics,
// statistics only, sparse over a key list + the causal diagonal tile) with two m16 row tiles per warp, so
// every K/V fragment read from shared memory feeds twice the tensor-core work. Selected at run time by
// KASCADE_PREFILL_DENSE=v2 (dense modes) and KASCADE_PREFILL_SPARSE=v2 (sparse mode); v1 stays the default
// until the H200 run times both (see prefill_attention.cu).
//
// Kernel prefill_attn_v2_kernel<T, D, GS, MODE>
//   One warp = 32 query rows of one head (two 16-row m-tiles), Q in shared memory (ldmatrix per step:
//   registers hold the 32 x D f32 output accumulators instead), K/V 64-key steps in a 2-stage ring filled
//   by 16-byte cp.async, rows padded to D + 8 elements (ldmatrix's 8 rows on distinct banks).
//   - dense modes: grid (ceil(queries / 128), heads, batch), 4 warps = 128 consecutive queries of one head;
//     heaviest (last) query blocks first; a warp skips steps wholly after its rows and masks only steps that
//     cross its diagonal (positions computed, no shared-memory list).
//   - sparse: grid (tiles, kvHeads x GS / NW, batch), NW = min(GS, 4) warps; warp w = query head
//     j * GS + block part * NW + w over the whole 32-query tile, so each gathered K/V row is read once per
//     group and tile (g <= 4). Key list as in v1: counts[t] entries of indices[b, headMap[j], t, :] (entries
//     outside 0..s_t-1 masked), then the diagonal keys s_t .. min(s_t + 32, n) - 1 under the causal mask.
//   Softmax: max on raw scores, p = ex2(s * scale * log2e - m) as one FFMA + ex2.approx.ftz, the output
//   accumulators rescaled only when some row's max moved (warp vote).
//   Shared memory: Q 128 x (D + 8) x 2 B + 2 stages x 64 x (D + 8) x 2 B for K and for V + 512 B: 104.4 KB at
//   D = 128 (two blocks per SM); statistics-only: 69.6 KB.
//   Wide dense (dense variant v5, wide = true): 8 warps = 256 queries of one head per block, one block per SM
//   (139 KB), so each K/V step loaded into shared memory feeds twice the rows: half the L2-to-SM traffic of
//   the 4-warp blocks at the same warps per SM.
#include <cstdio>

#include "prefill_attention.cuh"

namespace kascade {
namespace pf {

namespace {

constexpr int kV2Rows = 32;  // query rows per warp

template <int D, int MODE, int NW>
constexpr size_t v2_smem_bytes() {
  return static_cast<size_t>(NW * kV2Rows * (D + 8) + (MODE == kStats ? 2 : 4) * kKeys * (D + 8)) * 2 +
         2 * kKeys * sizeof(int);
}

__device__ __forceinline__ float ex2f(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <typename T, int D, int GS, int MODE, int NW>
__global__ void __launch_bounds__(NW * 32, NW >= 8 ? 1 : 2) prefill_attn_v2_kernel(KascadePrefillShape s, PrefillArgs a) {
  constexpr bool kWithV = MODE != kStats;
  constexpr bool kSparseMode = MODE == kSparse;
  constexpr bool kWriteStats = MODE == kDenseStats || MODE == kStats;
  constexpr int RW = D + 8;
  constexpr int KC = D / 16;
  constexpr int NB = D / 8;
  constexpr int NT = NW * 32;
  constexpr int CPR = D / 8;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = Qs + NW * kV2Rows * RW;
  T* Vs = Ks + 2 * kKeys * RW;
  int* posS = reinterpret_cast<int*>(Ks + (kWithV ? 4 : 2) * kKeys * RW);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;

  int h, j, q0w, listLen, cnt = 0, tileStart = 0;
  const int* idx = nullptr;
  if constexpr (kSparseMode) {
    constexpr int BPT = GS / NW;
    const int tiles = tiles_of(s);
    const int t = tiles - 1 - static_cast<int>(blockIdx.x);
    j = blockIdx.y / BPT;
    h = j * GS + (blockIdx.y % BPT) * NW + warp;
    q0w = t * kT;
    tileStart = s.queryStart + t * kT;
    const int diag = min(kT, n - tileStart);
    cnt = min(max(__ldg(a.counts + t), 0), a.kMax);
    idx = a.indices + ((static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * tiles + t) * a.kMax;
    listLen = cnt + diag;
  } else {
    const int qb = gridDim.x - 1 - blockIdx.x;
    h = blockIdx.y;
    j = h / (H / G);
    q0w = qb * (kV2Rows * NW) + warp * kV2Rows;
    listLen = min(n, s.queryStart + (qb + 1) * kV2Rows * NW);
  }
  // This thread's four rows: m-tile mt, r = 0 / 1 -> local row mt * 16 + row + 8 r.
  int pos[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    pos[mt][0] = s.queryStart + q0w + mt * 16 + row;
    pos[mt][1] = pos[mt][0] + 8;
  }
  const float qscale = s.scale * kLog2e;

  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);

  // Each warp stages its own 32 query rows (zero rows past the chunk's end); part of cp.async group 0.
  T* Qw = Qs + warp * kV2Rows * RW;
  {
    const T* qg = static_cast<const T*>(a.q) + qBase * D;
    for (int c = lane; c < kV2Rows * CPR; c += 32) {
      const int r = c / CPR, col = (c % CPR) * 8;
      const int qi = q0w + r;
      cp_async16(Qw + r * RW + col, qg + static_cast<size_t>(qi < Q ? qi : 0) * D + col, qi < Q ? 16 : 0);
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
      const int st = i & 1;
      for (int c = tid; c < kKeys * CPR; c += NT) {
        const int r = c / CPR, col = (c % CPR) * 8;
        const int p = list_pos(i * kKeys + r);
        if constexpr (kSparseMode) {
          if (col == 0) posS[st * kKeys + r] = p;
        }
        const size_t off = static_cast<size_t>(p < 0 ? 0 : p) * D + col;
        cp_async16(Ks + (st * kKeys + r) * RW + col, kg + off, p < 0 ? 0 : 16);
        if constexpr (kWithV) cp_async16(Vs + (st * kKeys + r) * RW + col, vg + off, p < 0 ? 0 : 16);
      }
    }
    cp_async_commit();
  };

  float m[2][2], l[2][2];
  float acc[2][kWithV ? NB : 1][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
#pragma unroll
    for (int nb = 0; nb < (kWithV ? NB : 1); ++nb) acc[mt][nb][0] = acc[mt][nb][1] = acc[mt][nb][2] = acc[mt][nb][3] = 0.f;
  }

  const int mi = lane >> 3, r8 = lane & 7;
  issue(0);
  for (int i = 0; i < steps; ++i) {
    issue(i + 1);
    cp_async_wait<1>();
    __syncthreads();
    const int st = i & 1;
    const int kFirst = i * kKeys;
    bool skip = false, needMask = true;
    if constexpr (!kSparseMode) {
      const int wMin = s.queryStart + q0w;
      skip = kFirst > wMin + kV2Rows - 1;
      needMask = kFirst + kKeys - 1 > wMin || kFirst + kKeys > listLen;
    }
    if (!skip) {
      const T* ks = Ks + st * kKeys * RW;
      float sc[2][8][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) sc[mt][nb][0] = sc[mt][nb][1] = sc[mt][nb][2] = sc[mt][nb][3] = 0.f;
#pragma unroll
      for (int kc = 0; kc < KC; ++kc) {
        uint32_t qf[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) ldsm_x4(qf[mt], Qw + (mt * 16 + (lane & 15)) * RW + kc * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int kb = 0; kb < 4; ++kb) {
          uint32_t bf[4];
          ldsm_x4(bf, ks + (kb * 16 + (mi >> 1) * 8 + r8) * RW + (mi & 1) * 8 + kc * 16);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma16816<T>(sc[mt][2 * kb], qf[mt], bf[0], bf[1]);
            mma16816<T>(sc[mt][2 * kb + 1], qf[mt], bf[2], bf[3]);
          }
        }
      }
      uint32_t pa[2][4][4];
      float al[2][2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        if (needMask) {
#pragma unroll
          for (int nb = 0; nb < 8; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              int p;
              if constexpr (kSparseMode) {
                p = posS[st * kKeys + nb * 8 + quad * 2 + e];
              } else {
                p = kFirst + nb * 8 + quad * 2 + e;
                if (p >= listLen) p = -1;
              }
              if (p < 0 || p > pos[mt][0]) sc[mt][nb][e] = -INFINITY;
              if (p < 0 || p > pos[mt][1]) sc[mt][nb][2 + e] = -INFINITY;
            }
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) {
          mx0 = fmaxf(mx0, fmaxf(sc[mt][nb][0], sc[mt][nb][1]));
          mx1 = fmaxf(mx1, fmaxf(sc[mt][nb][2], sc[mt][nb][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // Row max in the log2 domain (qscale > 0 keeps the order; -inf stays -inf).
        const float mn0 = fmaxf(m[mt][0], mx0 * qscale), mn1 = fmaxf(m[mt][1], mx1 * qscale);
        al[mt][0] = mn0 == -INFINITY ? 1.f : ex2f(m[mt][0] - mn0);
        al[mt][1] = mn1 == -INFINITY ? 1.f : ex2f(m[mt][1] - mn1);
        const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
        float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            sc[mt][nb][e] = ex2f(fmaf(sc[mt][nb][e], qscale, -b0));
            sc[mt][nb][2 + e] = ex2f(fmaf(sc[mt][nb][2 + e], qscale, -b1));
            rs0 += sc[mt][nb][e];
            rs1 += sc[mt][nb][2 + e];
          }
        l[mt][0] = l[mt][0] * al[mt][0] + rs0;
        l[mt][1] = l[mt][1] * al[mt][1] + rs1;
        m[mt][0] = mn0;
        m[mt][1] = mn1;
        if constexpr (kWithV) {
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            pa[mt][kk][0] = pack_2<T>(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
            pa[mt][kk][1] = pack_2<T>(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
            pa[mt][kk][2] = pack_2<T>(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
            pa[mt][kk][3] = pack_2<T>(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
          }
        }
      }
      if constexpr (kWithV) {
        const bool moved = al[0][0] != 1.f || al[0][1] != 1.f || al[1][0] != 1.f || al[1][1] != 1.f;
        if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int nb = 0; nb < NB; ++nb) {
              acc[mt][nb][0] *= al[mt][0];
              acc[mt][nb][1] *= al[mt][0];
              acc[mt][nb][2] *= al[mt][1];
              acc[mt][nb][3] *= al[mt][1];
            }
        }
        const T* vs = Vs + st * kKeys * RW;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const T* base = vs + (kk * 16 + (mi & 1) * 8 + r8) * RW + (mi >> 1) * 8;
#pragma unroll
          for (int nd = 0; nd < KC; ++nd) {
            uint32_t bf[4];
            ldsm_x4_trans(bf, base + nd * 16);
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
              mma16816<T>(acc[mt][2 * nd], pa[mt][kk], bf[0], bf[1]);
              mma16816<T>(acc[mt][2 * nd + 1], pa[mt][kk], bf[2], bf[3]);
            }
          }
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
      l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
    }
    const int qi0 = q0w + mt * 16 + row, qi1 = qi0 + 8;
    if constexpr (kWriteStats) {
      if (quad == 0) {
        if (qi0 < Q) {
          a.stats[(qBase + qi0) * 2] = m[mt][0];
          a.stats[(qBase + qi0) * 2 + 1] = l[mt][0];
        }
        if (qi1 < Q) {
          a.stats[(qBase + qi1) * 2] = m[mt][1];
          a.stats[(qBase + qi1) * 2 + 1] = l[mt][1];
        }
      }
    }
    if constexpr (kWithV) {
      const float inv0 = l[mt][0] > 0.f ? 1.f / l[mt][0] : 0.f, inv1 = l[mt][1] > 0.f ? 1.f / l[mt][1] : 0.f;
      T* o = static_cast<T*>(a.out);
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        if (qi0 < Q)
          *reinterpret_cast<uint32_t*>(o + (qBase + qi0) * D + nb * 8 + quad * 2) =
              pack_2<T>(acc[mt][nb][0] * inv0, acc[mt][nb][1] * inv0);
        if (qi1 < Q)
          *reinterpret_cast<uint32_t*>(o + (qBase + qi1) * D + nb * 8 + quad * 2) =
              pack_2<T>(acc[mt][nb][2] * inv1, acc[mt][nb][3] * inv1);
      }
    }
  }
}

template <typename T, int D, int GS, int MODE, int NW>
cudaError_t launch_v2_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = v2_smem_bytes<D, MODE, NW>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_attn_v2_kernel<T, D, GS, MODE, NW>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  dim3 grid;
  if constexpr (MODE == kSparse) {
    grid = dim3(tiles_of(s), s.kvHeads * (GS / NW), s.batch);
  } else {
    grid = dim3(ceil_div(s.queries, kV2Rows * NW), s.heads, s.batch);
  }
  prefill_attn_v2_kernel<T, D, GS, MODE, NW><<<grid, NW * 32, smem, st>>>(s, a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_prefill_attention_v2(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                        cudaStream_t st, bool wide) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      switch (mode) {
        case kDense:
          return wide ? launch_v2_t<T, D, 1, kDense, 8>(s, a, st) : launch_v2_t<T, D, 1, kDense, 4>(s, a, st);
        case kDenseStats:
          return wide ? launch_v2_t<T, D, 1, kDenseStats, 8>(s, a, st)
                      : launch_v2_t<T, D, 1, kDenseStats, 4>(s, a, st);
        case kStats: return launch_v2_t<T, D, 1, kStats, 4>(s, a, st);
        case kSparse:
          return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
            constexpr int NW = GS < 4 ? GS : 4;
            return launch_v2_t<T, D, GS, kSparse, NW>(s, a, st);
          });
      }
      return cudaErrorInvalidValue;
    });
  });
}

}  // namespace pf
}  // namespace kascade
