// Prefill attention, variant v6 (KASCADE_PREFILL_DENSE=v6: dense and dense + statistics at head dim 128, the
// statistics-only mode and head dim 64 run v2; KASCADE_PREFILL_SPARSE=v6: the sparse tile attention of the
// anchor and reuse at head dim 128 and g = 4, otherwise sparse v5): Hopper wgmma with the FlashAttention-3
// ideas that need no copy engine: 128-key steps (S tiles of m64n128), two warpgroups per block sharing every
// K/V step, and inside each warpgroup the next step's Q K^T on the tensor cores while this step's softmax
// runs. The wgmma variants v3 / v4 (prefill_attention_wgmma.cu) wait for every product at once and use 64-key
// S tiles; they ran at 185-210 TFLOP/s on the H200 against v2's 344.
//
// Sparse mode: grid (tiles, kvHeads, batch), one block = a tile's 32 queries of the group's 4 query heads
// (row r: head j * 4 + r / 32, query t * 32 + r % 32; warpgroup w = heads 2w, 2w + 1), over the key list of
// v1/v2/v5 (the selection's counts[t] entries, then the diagonal tile). Key positions come through a 4-slot
// shared-memory ring (loaded into registers an iteration before they are stored, the copies of a step issue
// from its slot); a step whose slot holds a diagonal, past-the-list or invalid entry is masked.
// Kernel prefill_dense_v6_kernel<T, MODE>: grid (ceil(queries / 128), heads, batch), heaviest (last) query
// blocks first; 256 threads = 2 warpgroups, warpgroup w = the block's query rows 64 w .. 64 w + 63, warp
// (w, v) rows 16 v .. 16 v + 15 of those. Keys 0 .. min(n, the block's last position + 1) - 1 in 128-key
// steps, K and V in a 3-stage shared-memory ring filled by 16-byte cp.async (the copy of step i + 3 is
// issued once step i is done with its stage), Q in shared memory once. All operands use the no-swizzle
// interleave
// layout of prefill_wgmma.cuh.
//   Iteration i: K(i + 1) / V(i + 1) land; S(i + 1) = Q K(i + 1)^T is issued (8 wgmma m64n128k16, A = Q and
//   B = K from shared memory) into the second S accumulator set; the online softmax of S(i) runs (log2
//   domain, FMA + ex2.approx; S(i) was masked in place when it was waited for, only on steps that cross the
//   warp's diagonal), the output is
//   rescaled when a row max moved, P(i) is rounded to the 16-bit type in registers (the accumulator layout
//   is the A-register layout); O += P(i) V(i) is issued (8 wgmma m64n128k16, A = P from registers, B = V
//   N-major from shared memory); the iteration ends waiting for both (nothing in flight across iterations:
//   ptxas serialises wgmma otherwise).
//   Shared memory: Q 128 x 128 x 2 B + 3 stages x 128 x 128 x 2 B for K and for V = 224 KB (one block per
//   SM; the limit is 227 KB), + 2.1 KB of positions in sparse mode.
#include <cstdio>
#include <type_traits>

#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kV6Keys = 128;  // keys per step
constexpr int kV6Rows = 128;  // query rows per block (two warpgroups of 64)
constexpr int kV6Stages = 3;  // K/V ring: the copy of step i + 3 is issued once step i is done

constexpr int kV6PosSlots = 4;  // sparse: key positions of steps i .. i + 3

template <typename T, int MODE, int SW>
constexpr size_t v6_smem_bytes() {
  return static_cast<size_t>(kV6Rows * 128 + 2 * kV6Stages * kV6Keys * 128) * sizeof(T) +
         (MODE == kSparse ? (kV6PosSlots * kV6Keys + kV6PosSlots * 4) * sizeof(int) : (SW > 0 ? 1024 : 0));
}

// 128-byte swizzled K-major layout (variant v7: Q and K; V stays in the interleave layout): a [rows][128]
// 16-bit tile as 2 regions of [rows][64] (128-byte rows), the 16-byte chunk c8 of row r stored at chunk
// c8 ^ (r % 8); regions 1024-byte aligned. Element offset of (row r, 16-byte chunk cc), and the descriptor of
// the kc-th 16-column slice of rows starting at `tile` in a tile of `rows` rows (swizzle mode 1 = 128 B,
// stride 1024 B between 8-row groups, leading offset unused).
__device__ __forceinline__ int v7_sw_offset(int rows, int r, int cc) {
  return (cc >> 3) * rows * 64 + r * 64 + (((cc & 7) ^ (r & 7)) << 3);
}
__device__ __forceinline__ uint64_t v7_sw_desc(const void* tile, int rows, int kc) {
  const char* p = static_cast<const char*>(tile) + (kc >> 2) * rows * 128 + (kc & 3) * 32;
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
// Variant v8 also stores V swizzled (the same [keys][64] regions: physically the 128-byte swizzled MN-major
// layout of the P V product's B operand, d contiguous). Descriptor of the kk-th 16-key slice: leading offset
// = the region stride (keys x 128 B: the next 64 columns of d), stride offset = 1024 B (the next 8 keys).
__device__ __forceinline__ uint64_t v8_v_desc(const void* tile, int keys, int kk) {
  const char* p = static_cast<const char*>(tile) + kk * 16 * 128;
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>((keys * 128) >> 4) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

template <typename T, int MODE, int SW>
__global__ void __launch_bounds__(256, 1) prefill_dense_v6_kernel(KascadePrefillShape s, PrefillArgs a) {
  constexpr int D = 128;
  constexpr bool kSparseMode = MODE == kSparse;
  constexpr bool kWriteStats = MODE == kDenseStats;
  constexpr int KC = D / 16;           // k-slices of Q K^T
  constexpr int CPR = D / 8;           // 16-byte chunks per row
  constexpr int TILE = kV6Keys * D;    // elements of one K (or V) stage
  constexpr uint32_t RG = D * 16;      // bytes between 8-row groups
  constexpr int NA = 64;               // f32 accumulators per thread of an m64n128 tile
  constexpr int GS = 4;                // sparse: the group's 4 query heads x the tile's 32 queries = 128 rows
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // The swizzled tiles need a 1024-byte aligned base. Dense modes round it up (1 KB extra is allocated);
  // sparse mode has no room left under the 227 KB limit and relies on the dynamic shared memory starting the
  // block's window (no static shared memory here): a misaligned base would compute garbage, so it traps.
  unsigned char* smem_base = smem_raw;
  if constexpr (SW > 0) {
    const uint32_t mis = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
    if constexpr (kSparseMode) {
      if (mis) __trap();
    } else {
      smem_base += (1024 - mis) & 1023;
    }
  }
  T* Qs = reinterpret_cast<T*>(smem_base);
  T* Ks = Qs + kV6Rows * D;
  T* Vs = Ks + kV6Stages * TILE;
  int* posS = reinterpret_cast<int*>(Vs + kV6Stages * TILE);  // sparse: [slot][128] key positions
  int* badS = posS + kV6PosSlots * kV6Keys;                     // sparse: [slot][4] "slot needs a mask"

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;
  const int r0 = wg * 64 + wl * 16 + row;  // this thread's block rows r0, r0 + 8
  int j, q0 = 0, listLen, qi0, pos0, warpFirst = 0, cnt = 0, tileStart = 0, t = 0;
  size_t qBase;
  const int* idx = nullptr;
  if constexpr (kSparseMode) {
    // Block = (tile t, KV head j); row r = query head j * 4 + r / 32, query t * 32 + r % 32.
    const int tiles = tiles_of(s);
    t = tiles - 1 - static_cast<int>(blockIdx.x);
    j = blockIdx.y;
    tileStart = s.queryStart + t * kT;
    const int diag = min(kT, n - tileStart);
    cnt = min(max(__ldg(a.counts + t), 0), a.kMax);
    idx = a.indices + ((static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * tiles + t) * a.kMax;
    listLen = cnt + diag;
    qi0 = t * kT + (r0 & (kT - 1));
    pos0 = tileStart + (r0 & (kT - 1));
    qBase = (static_cast<size_t>(b) * H + j * GS + (r0 >> 5)) * static_cast<size_t>(Q);
  } else {
    const int qb = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y;
    j = h / (H / G);
    q0 = qb * kV6Rows;
    listLen = min(n, s.queryStart + q0 + kV6Rows);
    qi0 = q0 + r0;
    pos0 = s.queryStart + qi0;
    warpFirst = s.queryStart + q0 + wg * 64 + wl * 16;  // the warp's first query position
    qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);
  }
  const int qi1 = qi0 + 8, pos1 = pos0 + 8;
  const int steps = (listLen + kV6Keys - 1) / kV6Keys;
  const float qscale = s.scale * kLog2e;

  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;

  // Q rows of the block (zero past the chunk's end): part of the first copy group.
  for (int c = tid; c < kV6Rows * CPR; c += 256) {
    const int r8 = c & 7, rest = c >> 3;
    const int cc = rest % CPR, r = (rest / CPR) * 8 + r8;
    size_t qrow;
    bool valid;
    if constexpr (kSparseMode) {
      const int qi = t * kT + (r & (kT - 1));
      valid = qi < Q;
      qrow = (static_cast<size_t>(b) * H + j * GS + (r >> 5)) * static_cast<size_t>(Q) + (valid ? qi : 0);
    } else {
      const int qi = q0 + r;
      valid = qi < Q;
      qrow = (static_cast<size_t>(b) * H + blockIdx.y) * static_cast<size_t>(Q) + (valid ? qi : 0);
    }
    cp_async16(Qs + (SW > 0 ? v7_sw_offset(kV6Rows, r, cc) : il_offset<D>(r, cc)), static_cast<const T*>(a.q) + qrow * D + cc * 8,
               valid ? 16 : 0);
  }

  // Sparse: list entry li's key position (-1: masked, never read); the positions of a step are loaded into
  // registers (threads 0..127, one each) an iteration before they are stored to their slot, and the copies
  // issue from the slot.
  auto list_pos = [&](int li) -> int {
    if (li >= listLen) return -1;
    if (li < cnt) {
      const int p = __ldg(idx + li);
      return (p >= 0 && p < tileStart) ? p : -1;
    }
    return tileStart + (li - cnt);
  };
  auto load_pos = [&](int i) -> int { return (tid < kV6Keys && i < steps) ? list_pos(i * kV6Keys + tid) : -1; };
  auto store_pos = [&](int i, int p) {
    const int slot = i % kV6PosSlots;
    if (tid < kV6Keys) {
      posS[slot * kV6Keys + tid] = p;
      // Diagonal entries, entries past the list and invalid ones need the mask.
      const bool bad = __any_sync(0xffffffffu, p < 0 || i * kV6Keys + tid >= cnt);
      if (lane == 0) badS[slot * 4 + warp] = bad ? 1 : 0;
    }
  };

  auto issue = [&](int i) {
    if (i < steps) {
      T* kd = Ks + (i % kV6Stages) * TILE;
      T* vd = Vs + (i % kV6Stages) * TILE;
      for (int c = tid; c < kV6Keys * CPR; c += 256) {
        const int r8 = c & 7, rest = c >> 3;
        const int cc = rest % CPR, r = (rest / CPR) * 8 + r8;
        int x;
        if constexpr (kSparseMode) {
          x = posS[(i % kV6PosSlots) * kV6Keys + r];
        } else {
          x = i * kV6Keys + r;
          if (x >= listLen) x = -1;
        }
        const size_t off = static_cast<size_t>(x < 0 ? 0 : x) * D + cc * 8;
        cp_async16(kd + (SW > 0 ? v7_sw_offset(kV6Keys, r, cc) : il_offset<D>(r, cc)), kg + off, x < 0 ? 0 : 16);
        cp_async16(vd + (SW >= 2 ? v7_sw_offset(kV6Keys, r, cc) : il_offset<D>(r, cc)), vg + off, x < 0 ? 0 : 16);
      }
    }
    cp_async_commit();
  };
  // This warpgroup's 64 query rows (8 row groups): rows 64 wg .. of each region.
  const T* qw = SW > 0 ? Qs + wg * 64 * 64 : Qs + wg * 64 * D;
  auto mma_s = [&](float* sacc, int i) {
    const T* ks = Ks + (i % kV6Stages) * TILE;
    pin<NA>(sacc);
    fence();
#pragma unroll
    for (int kc = 0; kc < KC; ++kc)
      if constexpr (SW > 0)
        wgmma_m64n128k16_ss(sacc, v7_sw_desc(qw, kV6Rows, kc), v7_sw_desc(ks, kV6Keys, kc), kc > 0 ? 1 : 0, T{});
      else
        wgmma_m64n128k16_ss(sacc, smem_desc(qw + kc * 128, 128, RG), smem_desc(ks + kc * 128, 128, RG), kc > 0 ? 1 : 0,
                            T{});
    commit();
    pin<NA>(sacc);
  };

  float o[NA];
#pragma unroll
  for (int x = 0; x < NA; ++x) o[x] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  // Softmax of step i's (masked) scores (in sacc, rows qi0 / qi1, key kFirst + nb * 8 + quad * 2 + e at
  // [nb * 4 + e] / [nb * 4 + 2 + e]) -> P in registers, then O += P V(i) issued (not waited for).
  // Causal mask of step i's scores, in place, only on steps that cross the warp's diagonal or the end. Run
  // right after the step's wgmma is waited for, outside any other wgmma's pipeline stage (writing the
  // accumulator registers while a wgmma is in flight makes ptxas serialise it: warning C7515).
  auto mask_step = [&](float* sacc, int i) {
    const int kFirst = i * kV6Keys;
    if constexpr (kSparseMode) {
      const int slot = i % kV6PosSlots;
      if (badS[slot * 4] | badS[slot * 4 + 1] | badS[slot * 4 + 2] | badS[slot * 4 + 3]) {
        const int* ps = posS + slot * kV6Keys;
#pragma unroll
        for (int nb = 0; nb < 16; ++nb)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int p = ps[nb * 8 + quad * 2 + e];
            if (p < 0 || p > pos0) sacc[nb * 4 + e] = -INFINITY;
            if (p < 0 || p > pos1) sacc[nb * 4 + 2 + e] = -INFINITY;
          }
      }
    } else if (kFirst + kV6Keys - 1 > warpFirst || kFirst + kV6Keys > listLen) {
#pragma unroll
      for (int nb = 0; nb < 16; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int p = kFirst + nb * 8 + quad * 2 + e;
          if (p > pos0 || p >= listLen) sacc[nb * 4 + e] = -INFINITY;
          if (p > pos1 || p >= listLen) sacc[nb * 4 + 2 + e] = -INFINITY;
        }
    }
  };

  auto softmax_pv = [&](const float* sacc, int i) {
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 16; ++nb) {
      mx0 = fmaxf(mx0, fmaxf(sacc[nb * 4], sacc[nb * 4 + 1]));
      mx1 = fmaxf(mx1, fmaxf(sacc[nb * 4 + 2], sacc[nb * 4 + 3]));
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
    uint32_t pa[8][4];
#pragma unroll
    for (int nb = 0; nb < 16; ++nb) {
      const float p00 = ex2f(fmaf(sacc[nb * 4 + 0], qscale, -b0)), p01 = ex2f(fmaf(sacc[nb * 4 + 1], qscale, -b0));
      const float p10 = ex2f(fmaf(sacc[nb * 4 + 2], qscale, -b1)), p11 = ex2f(fmaf(sacc[nb * 4 + 3], qscale, -b1));
      rs0 += p00 + p01;
      rs1 += p10 + p11;
      // k-slice kk = nb / 2: a0 / a1 = keys kk*16 + quad*2 (rows qi0 / qi1), a2 / a3 = the same + 8.
      pa[nb >> 1][(nb & 1) * 2 + 0] = pack_2<T>(p00, p01);
      pa[nb >> 1][(nb & 1) * 2 + 1] = pack_2<T>(p10, p11);
    }
    l0 = l0 * al0 + rs0;
    l1 = l1 * al1 + rs1;
    m0 = mn0;
    m1 = mn1;
    if (__any_sync(0xffffffffu, al0 != 1.f || al1 != 1.f)) {
#pragma unroll
      for (int nb = 0; nb < 16; ++nb) {
        o[nb * 4 + 0] *= al0;
        o[nb * 4 + 1] *= al0;
        o[nb * 4 + 2] *= al1;
        o[nb * 4 + 3] *= al1;
      }
    }
    const T* vs = Vs + (i % kV6Stages) * TILE;
    pin<NA>(o);
    fence();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      if constexpr (SW >= 2)
        wgmma_m64n128k16_rs<1>(o, pa[kk], v8_v_desc(vs, kV6Keys, kk), 1, T{});
      else
        wgmma_m64n128k16_rs<1>(o, pa[kk], smem_desc(vs + kk * 16 * D, RG, 128), 1, T{});
    }
    commit();
    pin<NA>(o);
  };

  float sA[NA], sB[NA];
  int pr = -1;  // sparse: the positions of the step to be stored next, one per thread 0..127
  if constexpr (kSparseMode) {
    store_pos(0, load_pos(0));
    store_pos(1, load_pos(1));
    store_pos(2, load_pos(2));
    pr = load_pos(3);
    __syncthreads();
  }
  issue(0);
  issue(1);
  issue(2);
  cp_async_wait<2>();
  fence_proxy_async();
  __syncthreads();
  mma_s(sA, 0);
  wait0();
  pin<NA>(sA);
  mask_step(sA, 0);

  // Iteration i (S(i) is complete in cur): K/V(i + 1) land (issued two iterations ago), S(i + 1) goes to the
  // tensor cores, the softmax and P V of step i follow, then everything is waited for, and step i's stage is
  // refilled with step i + 3.
  auto body = [&](auto parity, int i) {
    float* cur = parity.value == 0 ? sA : sB;
    float* nxt = parity.value == 0 ? sB : sA;
    cp_async_wait<1>();  // K / V (i + 1); (i + 2) may still be in flight
    fence_proxy_async();
    __syncthreads();
    if (i + 1 < steps) mma_s(nxt, i + 1);
    softmax_pv(cur, i);
    wait0();
    pin<NA>(nxt);
    pin<NA>(o);
    if (i + 1 < steps) mask_step(nxt, i + 1);
    // Sparse: step i + 3's positions go to slot (i + 3) % 4, last used by step i - 1 (its mask two
    // iterations ago, its copies four).
    if constexpr (kSparseMode) store_pos(i + 3, pr);
    __syncthreads();  // every warp is done with step i's stage (K(i) in S(i), V(i) in P V(i))
    issue(i + 3);
    if constexpr (kSparseMode) pr = load_pos(i + 4);  // lands during the next iteration
  };
#pragma unroll 1
  for (int i = 0; i < steps; i += 2) {
    body(std::integral_constant<int, 0>{}, i);
    if (i + 1 < steps) body(std::integral_constant<int, 1>{}, i + 1);
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
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int nb = 0; nb < 16; ++nb) {
    if (qi0 < Q)
      *reinterpret_cast<uint32_t*>(out + (qBase + qi0) * D + nb * 8 + quad * 2) =
          pack_2<T>(o[nb * 4 + 0] * inv0, o[nb * 4 + 1] * inv0);
    if (qi1 < Q)
      *reinterpret_cast<uint32_t*>(out + (qBase + qi1) * D + nb * 8 + quad * 2) =
          pack_2<T>(o[nb * 4 + 2] * inv1, o[nb * 4 + 3] * inv1);
  }
}

template <typename T, int MODE, int SW>
cudaError_t launch_v6_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = v6_smem_bytes<T, MODE, SW>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_dense_v6_kernel<T, MODE, SW>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  const dim3 grid = MODE == kSparse ? dim3(tiles_of(s), s.kvHeads, s.batch)
                                    : dim3(ceil_div(s.queries, kV6Rows), s.heads, s.batch);
  prefill_dense_v6_kernel<T, MODE, SW><<<grid, 256, smem, st>>>(s, a);
  return cudaGetLastError();
}

}  // namespace

bool prefill_dense_v6_supports(const KascadePrefillShape& s, PrefillMode mode) {
  if (s.headDim != 128) return false;
  if (mode == kSparse) return s.heads == 4 * s.kvHeads;
  return mode == kDense || mode == kDenseStats;
}

cudaError_t launch_prefill_dense_v6(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                    cudaStream_t st, int swizzle) {
  if (!prefill_dense_v6_supports(s, mode) || swizzle < 0 || swizzle > 2) return cudaErrorInvalidValue;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    auto go = [&](auto mode_c) -> cudaError_t {
      constexpr int M = decltype(mode_c)::value;
      return swizzle == 2   ? launch_v6_t<T, M, 2>(s, a, st)
             : swizzle == 1 ? launch_v6_t<T, M, 1>(s, a, st)
                            : launch_v6_t<T, M, 0>(s, a, st);
    };
    switch (mode) {
      case kDense: return go(std::integral_constant<int, kDense>{});
      case kDenseStats: return go(std::integral_constant<int, kDenseStats>{});
      case kSparse: return go(std::integral_constant<int, kSparse>{});
      default: return cudaErrorInvalidValue;
    }
  });
}

}  // namespace pf
}  // namespace kascade
