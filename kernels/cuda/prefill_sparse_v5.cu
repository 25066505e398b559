// Sparse tile attention, variant v5 (KASCADE_PREFILL_SPARSE=v5): the reuse op and the anchor's sparse pass,
// v2's warp layout (prefill_attention_v2.cu) with the gather made cheaper. v2 stays selectable beside it.
//
// Kernel prefill_sparse_v5_kernel<T, D, GS, NW>
//   Grid (tiles, kvHeads x GS / NW, batch), heaviest (last) tiles first, so the blocks in flight are
//   neighbouring tiles of one KV head (their selections overlap: the gathered rows stay in L2). NW =
//   min(GS, 4) warps; warp w = query head j * GS + block part * NW + w over the tile's 32 queries (two m16
//   tiles), so every gathered K/V row feeds all the group's query heads (g <= 4) from one shared-memory copy.
//   Key list as in v1/v2: the first counts[t] entries of indices[b, headMap[j], t, :] (entries outside
//   0..s_t-1 masked), then the diagonal keys s_t .. min(s_t + 32, n) - 1 under the causal mask.
//   What differs from v2:
//   - Key positions: v2's copy threads each read their row's index from global memory right before
//     issuing the copy (an L2 round trip on every step's critical path). Here a 3-slot ring of positions
//     in shared memory is filled one step ahead: the positions of step i + 2 are loaded into registers
//     while step i computes and stored at step i + 1, so a step's copies issue from shared memory.
//   - Masks: a step whose keys all come from the selection (before the tile) and are all valid needs no
//     mask (a per-slot flag, set when the positions are stored); only the diagonal step(s) and steps with
//     invalid entries pay for it; positions are read once per column for both m16 tiles.
//   - K and V are separate cp.async groups: Q K^T and the softmax of step i run while V(i) still lands.
//   Shared memory: Q NW x 32 x (D + 8) x 2 B + 2 stages x 64 x (D + 8) x 2 B for K and for V + 3 x 64
//   positions + 6 flags: 104.6 KB at D = 128, g >= 4 (two blocks per SM).
#include <cstdio>

#include "prefill_attention.cuh"

namespace kascade {
namespace pf {

namespace {

constexpr int kV5Rows = 32;   // query rows per warp
constexpr int kPosSlots = 3;  // position ring

template <int D, int NW>
constexpr size_t v5_smem_bytes() {
  return static_cast<size_t>(NW * kV5Rows * (D + 8) + 4 * kKeys * (D + 8)) * 2 +
         (kPosSlots * kKeys + 2 * kPosSlots) * sizeof(int);
}

__device__ __forceinline__ float ex2f_v5(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <typename T, int D, int GS, int NW>
__global__ void __launch_bounds__(NW * 32, 2) prefill_sparse_v5_kernel(KascadePrefillShape s, PrefillArgs a) {
  constexpr int RW = D + 8;
  constexpr int KC = D / 16;
  constexpr int NB = D / 8;
  constexpr int NT = NW * 32;
  constexpr int CPR = D / 8;
  constexpr int PPT = (kKeys + NT - 1) / NT;  // positions each thread prefetches per step

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = Qs + NW * kV5Rows * RW;
  T* Vs = Ks + 2 * kKeys * RW;
  int* posS = reinterpret_cast<int*>(Vs + 2 * kKeys * RW);
  int* badS = posS + kPosSlots * kKeys;  // [slot][2]: some entry of the slot is masked out

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;

  constexpr int BPT = GS / NW;
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int j = blockIdx.y / BPT;
  const int h = j * GS + (blockIdx.y % BPT) * NW + warp;
  const int q0w = t * kT;
  const int tileStart = s.queryStart + t * kT;
  const int diag = min(kT, n - tileStart);
  const int cnt = min(max(__ldg(a.counts + t), 0), a.kMax);
  const int* idx = a.indices + ((static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * tiles + t) * a.kMax;
  const int listLen = cnt + diag;
  const int steps = (listLen + kKeys - 1) / kKeys;

  int pos[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    pos[mt][0] = tileStart + mt * 16 + row;
    pos[mt][1] = pos[mt][0] + 8;
  }
  const float qscale = s.scale * kLog2e;

  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);

  // Position of list entry li (-1: masked, never read). Selection entries must lie before the tile.
  auto list_pos = [&](int li) -> int {
    if (li >= listLen) return -1;
    if (li < cnt) {
      const int p = __ldg(idx + li);
      return (p >= 0 && p < tileStart) ? p : -1;
    }
    return tileStart + (li - cnt);
  };
  // Stores step i's positions (held in pr) in its slot, with the slot's "some entry masked" flag.
  auto store_pos = [&](int i, const int* pr) {
    const int slot = i % kPosSlots;
#pragma unroll
    for (int e = 0; e < PPT; ++e) {
      const int r = tid + e * NT;
      if (r < kKeys) posS[slot * kKeys + r] = pr[e];
    }
    if (warp < 2) {
      bool bad = false;
#pragma unroll
      for (int e = 0; e < PPT; ++e) {
        const int r = tid + e * NT;
        const int li = i * kKeys + r;
        // Diagonal entries and entries past the list need the causal mask too.
        bad = bad || (r < kKeys && (pr[e] < 0 || li >= cnt));
      }
      bad = __any_sync(0xffffffffu, bad);
      if (lane == 0) badS[slot * 2 + warp] = bad ? 1 : 0;
    }
    if (NW == 1 && lane == 0) badS[slot * 2 + 1] = 0;
  };
  auto load_pos = [&](int i, int* pr) {
#pragma unroll
    for (int e = 0; e < PPT; ++e) {
      const int r = tid + e * NT;
      pr[e] = (i < steps && r < kKeys) ? list_pos(i * kKeys + r) : -1;
    }
  };

  // Each warp stages its own head's 32 query rows (zero rows past the chunk's end): part of K(0)'s group.
  T* Qw = Qs + warp * kV5Rows * RW;
  {
    const T* qg = static_cast<const T*>(a.q) + qBase * D;
    for (int c = lane; c < kV5Rows * CPR; c += 32) {
      const int r = c / CPR, col = (c % CPR) * 8;
      const int qi = q0w + r;
      cp_async16(Qw + r * RW + col, qg + static_cast<size_t>(qi < Q ? qi : 0) * D + col, qi < Q ? 16 : 0);
    }
  }

  // Copies of step i into stage i & 1, from the positions in slot i % 3: K then V, one commit group each
  // (empty groups past the end keep the wait counts uniform).
  auto issue = [&](int i) {
    if (i < steps) {
      const int stg = i & 1;
      const int* ps = posS + (i % kPosSlots) * kKeys;
      for (int c = tid; c < kKeys * CPR; c += NT) {
        const int r = c / CPR, col = (c % CPR) * 8;
        const int p = ps[r];
        cp_async16(Ks + (stg * kKeys + r) * RW + col, kg + static_cast<size_t>(p < 0 ? 0 : p) * D + col,
                   p < 0 ? 0 : 16);
      }
      cp_async_commit();
      for (int c = tid; c < kKeys * CPR; c += NT) {
        const int r = c / CPR, col = (c % CPR) * 8;
        const int p = ps[r];
        cp_async16(Vs + (stg * kKeys + r) * RW + col, vg + static_cast<size_t>(p < 0 ? 0 : p) * D + col,
                   p < 0 ? 0 : 16);
      }
      cp_async_commit();
    } else {
      cp_async_commit();
      cp_async_commit();
    }
  };

  float m[2][2], l[2][2];
  float acc[2][NB][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) acc[mt][nb][0] = acc[mt][nb][1] = acc[mt][nb][2] = acc[mt][nb][3] = 0.f;
  }

  // Prologue: positions of steps 0 and 1 stored, step 2's in flight in registers, step 0's copies issued.
  int pr[PPT];
  load_pos(0, pr);
  store_pos(0, pr);
  load_pos(1, pr);
  store_pos(1, pr);
  load_pos(2, pr);
  __syncthreads();
  issue(0);

  const int mi = lane >> 3, r8 = lane & 7;
  for (int i = 0; i < steps; ++i) {
    issue(i + 1);           // reads slot (i + 1) % 3, stored before the last barrier
    store_pos(i + 2, pr);   // slot (i + 2) % 3 = (i - 1) % 3: step i - 1 is done with it
    load_pos(i + 3, pr);    // lands while this step computes
    cp_async_wait<3>();     // K(i) (and Q) landed; V(i), K(i + 1), V(i + 1) may be in flight
    __syncthreads();
    const int stg = i & 1;
    const int slot = i % kPosSlots;
    const int kFirst = i * kKeys;
    const bool needMask = kFirst + kKeys > cnt || badS[slot * 2] != 0 || badS[slot * 2 + 1] != 0;
    const T* ks = Ks + stg * kKeys * RW;
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
    if (needMask) {
      const int* ps = posS + slot * kKeys;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int p = ps[nb * 8 + quad * 2 + e];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            if (p < 0 || p > pos[mt][0]) sc[mt][nb][e] = -INFINITY;
            if (p < 0 || p > pos[mt][1]) sc[mt][nb][2 + e] = -INFINITY;
          }
        }
    }
    uint32_t pa[2][4][4];
    float al[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
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
      const float mn0 = fmaxf(m[mt][0], mx0 * qscale), mn1 = fmaxf(m[mt][1], mx1 * qscale);
      al[mt][0] = mn0 == -INFINITY ? 1.f : ex2f_v5(m[mt][0] - mn0);
      al[mt][1] = mn1 == -INFINITY ? 1.f : ex2f_v5(m[mt][1] - mn1);
      const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
      float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          sc[mt][nb][e] = ex2f_v5(fmaf(sc[mt][nb][e], qscale, -b0));
          sc[mt][nb][2 + e] = ex2f_v5(fmaf(sc[mt][nb][2 + e], qscale, -b1));
          rs0 += sc[mt][nb][e];
          rs1 += sc[mt][nb][2 + e];
        }
      l[mt][0] = l[mt][0] * al[mt][0] + rs0;
      l[mt][1] = l[mt][1] * al[mt][1] + rs1;
      m[mt][0] = mn0;
      m[mt][1] = mn1;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        pa[mt][kk][0] = pack_2<T>(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
        pa[mt][kk][1] = pack_2<T>(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
        pa[mt][kk][2] = pack_2<T>(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
        pa[mt][kk][3] = pack_2<T>(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
      }
    }
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
    cp_async_wait<2>();  // V(i) landed
    __syncthreads();
    const T* vs = Vs + stg * kKeys * RW;
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
    __syncthreads();  // stage i & 1 and slot i % 3 are free for step i + 2 / i + 3
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

template <typename T, int D, int GS, int NW>
cudaError_t launch_v5_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = v5_smem_bytes<D, NW>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_sparse_v5_kernel<T, D, GS, NW>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  const dim3 grid(tiles_of(s), s.kvHeads * (GS / NW), s.batch);
  prefill_sparse_v5_kernel<T, D, GS, NW><<<grid, NW * 32, smem, st>>>(s, a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_prefill_sparse_v5(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        constexpr int NW = GS < 4 ? GS : 4;
        return launch_v5_t<T, D, GS, NW>(s, a, st);
      });
    });
  });
}

}  // namespace pf
}  // namespace kascade
