// Prefill attention, the dense kernel v9 (KASCADE_PREFILL_DENSE=v17, the default, or v12: dense and dense +
// statistics at head dim 128; head dim 64 runs v2; their statistics-only pass is prefill_stats_v17.cu):
// FlashAttention-3's structure on Hopper, with the copy engine, a 2-stage K/V ring.
//
// Layout: q [batch, heads, queries, 128], k / v [batch, kvHeads, capacity, 128] (bf16 or f16), out like q,
// stats [batch, heads, queries, 2] f32 (dense + statistics: the row max in the log2 domain and the row sum,
// what layer 0's pool normalises by). f32 accumulation.
//
// Kernel prefill_dense_v9_kernel<T, STATS>: grid (g x ceil(queries / 128), kvHeads, batch)
// (prefill_v9_plan.h): block x = (query block qb, head in group), the group's g heads of one query block are
// consecutive CTAs (they read the same K/V tiles at the same time: L2 hits), heaviest (last) query blocks
// first so the causal wave's ragged end holds the short blocks. 384 threads = 3 warpgroups:
//   - warpgroup 0, the producer: gives registers back (setmaxnreg 40); one thread issues TMA tensor copies
//     (cp.async.bulk.tensor, 128-byte swizzle, tensor maps built on the host: boxes of 64 elements x 128
//     rows, two per 128 x 128 tile) of Q once and of K(i), another thread those of V(i), into STAGES-deep
//     rings, each stage with a "full" mbarrier (transaction bytes) and an "empty" one (256 consumer
//     arrivals).
//   - warpgroups 1 and 2, the consumers (setmaxnreg 232; without it ptxas spills 208 bytes at the 168
//     registers of a 384-thread block): query rows 64 (w - 1) .. + 63 of the block, each
//     its own online softmax. Per 128-key step i: S(i) = Q K(i)^T issued (8 wgmma m64n128k16, both operands
//     in shared memory), then O += P(i - 1) V(i - 1) issued (8 wgmma m64n128k16, P from registers); waiting
//     for S(i) alone (wait_group 1), K(i)'s stage is released and S(i) masked (only on steps crossing the
//     warp's diagonal) and put through the softmax while P V runs on the tensor cores; then P V is waited
//     for, V(i - 1)'s stage released, O rescaled where a row max moved and P(i) rounded to 16 bits.
//     Registers: O 64 + S 64 + P 32 f32/b32 per thread.
// Shared memory: Q 32 KB + 2 stages x (K 32 KB + V 32 KB) + 1 KB alignment + barriers: 161 KB, one CTA per SM.
// Bytes: per CTA Q 32 KB and the keys 0 .. its last position of K and V once (from L2 mostly: the group's g
// heads and the neighbouring query blocks read the same tiles); out 32 KB; statistics 1 KB.
#include <type_traits>

#include "prefill_tma.cuh"
#include "prefill_v9_plan.h"
#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kV9Keys = 128;  // keys per step
constexpr int kV9Rows = 128;  // query rows per CTA (two consumer warpgroups of 64)
constexpr int kV9Threads = 384;
constexpr int kV9ConsumerThreads = 256;
constexpr int kV9Box = 64;  // TMA box: 64 elements (128 bytes, the swizzle span) x 128 rows
constexpr int kV9Stages = 2;

struct V9Maps {
  CUtensorMap q;
  CUtensorMap k;
  CUtensorMap v;
};

template <typename T>
constexpr size_t v9_smem_bytes() {
  return static_cast<size_t>(kV9Rows * 128 + 2 * kV9Stages * kV9Keys * 128) * sizeof(T) + 1024 + 256;
}

// (Its statistics-only mode, the anchors' statistics pass on the two consumer warpgroups taking turns, gave way to
// prefill_stats_v17.cu's four warpgroups in session 5 and is gone, with session 4's dense v10-v13 and session 5's
// v14-v16.)
template <typename T, bool STATS>
__global__ void __launch_bounds__(kV9Threads, 1)
    prefill_dense_v9_kernel(const KascadePrefillShape s, const PrefillArgs a, const __grid_constant__ V9Maps maps) {
  constexpr int D = 128;
  constexpr int STAGES = kV9Stages;
  constexpr int TILE = kV9Keys * D;  // elements of one K (or V) stage
  constexpr int NA = 64;             // f32 accumulators per thread of an m64n128 tile
  constexpr unsigned kTileBytes = TILE * sizeof(T);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem_base = smem_raw;
  {
    const uint32_t mis = tma::smem_u32(smem_raw) & 1023;
    smem_base += (1024 - mis) & 1023;
  }
  T* Qs = reinterpret_cast<T*>(smem_base);
  T* Ks = Qs + kV9Rows * D;
  T* Vs = Ks + STAGES * TILE;
  uint64_t* bars = reinterpret_cast<uint64_t*>(Vs + STAGES * TILE);
  uint64_t* qFull = bars;
  uint64_t* kFull = bars + 1;
  uint64_t* vFull = kFull + STAGES;
  uint64_t* kEmpty = vFull + STAGES;
  uint64_t* vEmpty = kEmpty + STAGES;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wgi = warp >> 2;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;
  const int j = blockIdx.y;
  const PrefillV9Block blk = prefill_v9_block(s, static_cast<int>(blockIdx.x), j);
  const int h = blk.head, qb = blk.queryBlock;
  const int q0 = qb * kV9Rows;
  const int listLen = min(n, s.queryStart + q0 + kV9Rows);
  const int steps = (listLen + kV9Keys - 1) / kV9Keys;

  if (tid == 0) {
    tma::mbar_init(qFull, 1);
    for (int x = 0; x < STAGES; ++x) {
      tma::mbar_init(kFull + x, 1);
      tma::mbar_init(vFull + x, 1);
      tma::mbar_init(kEmpty + x, kV9ConsumerThreads);
      tma::mbar_init(vEmpty + x, kV9ConsumerThreads);
    }
    tma::mbar_fence_init();
  }
  __syncthreads();

  if (wgi == 0) {
    // Producer warpgroup: two threads issue every copy; the others leave.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    // Lane 0 of warp 0 issues Q and every K tile, lane 0 of warp 1 every V tile: K(i) waits only for K(i -
    // STAGES)'s release (right after S(i - STAGES)), not for V's (after P V, a step later).
    if (lane == 0 && (warp == 0 || warp == 1)) {
      const int kvRow = b * G + j;
      const bool isK = warp == 0;
      const CUtensorMap* map = isK ? &maps.k : &maps.v;
      T* ring = isK ? Ks : Vs;
      uint64_t* full = isK ? kFull : vFull;
      uint64_t* empty = isK ? kEmpty : vEmpty;
      if (isK) {
        tma::mbar_arrive_expect_tx(qFull, kV9Rows * D * sizeof(T));
        tma::copy_3d(Qs, &maps.q, 0, q0, b * H + h, qFull);
        tma::copy_3d(Qs + kV9Rows * kV9Box, &maps.q, kV9Box, q0, b * H + h, qFull);
      }
      for (int i = 0; i < steps; ++i) {
        const int st = i % STAGES;
        const unsigned u = static_cast<unsigned>(i / STAGES);
        if (i >= STAGES) tma::mbar_wait(empty + st, (u - 1) & 1);
        tma::mbar_arrive_expect_tx(full + st, kTileBytes);
        tma::copy_3d(ring + st * TILE, map, 0, i * kV9Keys, kvRow, full + st);
        tma::copy_3d(ring + st * TILE + kV9Keys * kV9Box, map, kV9Box, i * kV9Keys, kvRow, full + st);
      }
    }
    return;
  }

  // Consumer warpgroups.
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int cw = wgi - 1, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  const int r0 = cw * 64 + wl * 16 + row;  // this thread's block rows r0, r0 + 8
  const int qi0 = q0 + r0, qi1 = qi0 + 8;
  const int pos0 = s.queryStart + qi0, pos1 = pos0 + 8;
  const int warpFirst = s.queryStart + q0 + cw * 64 + wl * 16;  // the warp's first query position
  const size_t qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);
  const float qscale = s.scale * kLog2e;
  const T* qw = Qs + cw * 64 * kV9Box;  // this warpgroup's 64 rows in each region

  auto issue_s = [&](float* sacc, int i) {
    const int st = i % STAGES;
    tma::mbar_spin(kFull + st, static_cast<unsigned>(i / STAGES) & 1);
    const T* ks = Ks + st * TILE;
    issue_ab(sacc, qw, kV9Rows, ks, kV9Keys);
  };
  auto issue_pv = [&](float* o, const uint32_t (*pa)[4], int i) {
    const int st = i % STAGES;
    tma::mbar_spin(vFull + st, static_cast<unsigned>(i / STAGES) & 1);
    const T* vs = Vs + st * TILE;
    issue_pv_rs(o, pa, vs, kV9Keys);
  };
  // Causal mask of step i's scores in place (rows qi0 / qi1, key i * 128 + nb * 8 + quad * 2 + e at
  // [nb * 4 + e] / [nb * 4 + 2 + e]), only on steps that cross the warp's diagonal or the end.
  auto mask_step = [&](float* sacc, int i) {
    const int kFirst = i * kV9Keys;
    if (kFirst + kV9Keys - 1 > warpFirst || kFirst + kV9Keys > listLen)
      mask_causal<16>(sacc, kFirst, quad, pos0, pos1, listLen);
  };

  float o[NA], sacc[NA];
  uint32_t pa[8][4];
#pragma unroll
  for (int x = 0; x < NA; ++x) o[x] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float al0 = 1.f, al1 = 1.f;

  auto softmax = [&]() { online_softmax(sacc, qscale, m0, m1, l0, l1, al0, al1); };
  auto rescale_pack = [&]() { pf::wg::rescale_pack<T>(o, sacc, al0, al1, pa); };

  tma::mbar_wait(qFull, 0);
  attention_steps(
      steps, sacc, o, pa, issue_s, issue_pv, [&](int i) { tma::mbar_arrive(kEmpty + i % STAGES); }, mask_step, softmax,
      rescale_pack, [&](int i, bool last) {
        if (!last) tma::mbar_arrive(vEmpty + i % STAGES);
      });

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if constexpr (STATS) {
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
  store_o_rows(static_cast<T*>(a.out), o, l0, l1, qBase, qi0, qi1, Q, quad);
}

template <typename T, bool STATS>
cudaError_t launch_v9_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = v9_smem_bytes<T>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_dense_v9_kernel<T, STATS>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  V9Maps maps;
  const int n = s.queryStart + s.queries;
  if (!tma_encode(&maps.q, s.dtype, a.q, s.queries, s.queries, s.batch * s.heads, kV9Rows) ||
      !tma_encode(&maps.k, s.dtype, a.k, n, s.capacity, s.batch * s.kvHeads, kV9Keys) ||
      !tma_encode(&maps.v, s.dtype, a.v, n, s.capacity, s.batch * s.kvHeads, kV9Keys))
    return cudaErrorNotSupported;
  const PrefillGrid grid = prefill_v9_grid(s);
  prefill_dense_v9_kernel<T, STATS>
      <<<dim3(grid.x, grid.y, grid.z), kV9Threads, smem, st>>>(s, a, maps);
  return cudaGetLastError();
}

}  // namespace

bool prefill_dense_v9_supports(const KascadePrefillShape& s, PrefillMode mode) {
  return s.headDim == 128 && (mode == kDense || mode == kDenseStats);
}

cudaError_t launch_prefill_dense_v9(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                    cudaStream_t st) {
  if (!prefill_dense_v9_supports(s, mode)) return cudaErrorInvalidValue;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    if (mode == kDense) return launch_v9_t<T, false>(s, a, st);
    return launch_v9_t<T, true>(s, a, st);
  });
}

}  // namespace pf
}  // namespace kascade
