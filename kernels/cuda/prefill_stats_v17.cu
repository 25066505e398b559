// The anchors' statistics-only pass of dense variant v22 (KASCADE_PREFILL_DENSE=v22, the default; its dense and
// dense + statistics modes run dense v9): for every query row the max (log2 domain) and sum of its full causal
// softmax, written to stats [batch, heads, queries, 2] as dense v9's statistics-only mode does. Session 5's v17
// (this kernel with a per-step row max and rescale) lost to v22 in session 6 (call A: 7.51 against 7.13 ms at 32k,
// ncu; the anchor 304.4 against 297.7 ms at 128k) and is gone (session 7), as are session 5's v18-v20 (no turns,
// FMA-pipe exponentials, a lazy thread-local max) and session 6's v24 (v22 with a quarter of the exponentials on
// the FMA pipe: anchor 327.3 ms).
//
// Why: per 128-key step of 64 query rows the pass is 8 wgmma m64n128k16 (about 512 tensor-core cycles of an SM)
// against 8192 exponentials (about 512 MUFU cycles of one warpgroup's four warps); dense v9's two consumer
// warpgroups (one per 64 rows) reach about 51 % of each (ncu, session 4). Here four consumer warpgroups split
// the CTA's 128 query rows in halves (rh) and its 128-key steps by parity (kp: warpgroup 2 kp + rh takes the
// steps i with i % 2 = kp of rows 64 rh .. + 63) and issue their products in order (step i rows 0-63, step i
// rows 64-127, step i + 1 ..., prefill_tma.cuh's Turns), so while one warpgroup exponentiates, up to three
// products are queued on the tensor cores and each SM sub-partition's MUFU has four warps to feed it. At the end
// the two parities' (max, sum) of a row are merged through shared memory.
//
// prefill_stats_v17_kernel<T>: dense v9's grid and CTA order (prefill_v9_plan.h) and tensor maps (boxes of 64 x
// 128); 640 threads: warpgroup 0 the producer (setmaxnreg 24; one thread issues Q once and K in 128-key steps
// into a 4-stage ring, full / empty mbarriers per stage, a stage released by the two warpgroups of its parity),
// warpgroups 1-4 the consumers (setmaxnreg 112).
// Shared memory: Q 32 KB + 4 x K 32 KB + 1 KB alignment + 1 KB merge: 163 KB, one CTA per SM.
#include "prefill_tma.cuh"
#include "prefill_v9_plan.h"
#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kS17Keys = 128;  // keys per step
constexpr int kS17Rows = 128;  // query rows per CTA
constexpr int kS17Stages = 4;
constexpr int kS17Consumers = 4;
constexpr int kS17Threads = 128 * (kS17Consumers + 1);

template <typename T>
constexpr size_t s17_smem_bytes() {
  return static_cast<size_t>(kS17Rows * 128 + kS17Stages * kS17Keys * 128) * sizeof(T) + 1024 +
         kS17Rows * 2 * sizeof(float) + 256;
}

// (m, l) += (m2, l2): two partial softmax statistics of one row (log2-domain max, sum) merged.
__device__ __forceinline__ void merge_ml(float& m, float& l, float m2, float l2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;
  l = (m == -INFINITY ? 0.f : l * ex2f(m - mn)) + (m2 == -INFINITY ? 0.f : l2 * ex2f(m2 - mn));
  m = mn;
}

// One step of a thread's row (accumulator elements e0, e0 + 1 of each column block) against its held offset m
// (variant 22): l += sum exp2(s q - m) unless that sum reaches 2^64 or is not a number (nothing held yet: m =
// -inf), then the step again against max(m, the step's own thread-local max), l rescaled.
__device__ __forceinline__ void stale_row(const float* sacc, int e0, float qscale, float& m, float& l) {
  if (m != -INFINITY) {
    float rs = 0.f;
#pragma unroll
    for (int nb = 0; nb < 16; ++nb)
      rs += ex2f(fmaf(sacc[nb * 4 + e0], qscale, -m)) + ex2f(fmaf(sacc[nb * 4 + e0 + 1], qscale, -m));
    if (rs < 0x1p64f) {
      l += rs;
      return;
    }
  }
  float mx = -INFINITY;
#pragma unroll
  for (int nb = 0; nb < 16; ++nb) mx = fmaxf(mx, fmaxf(sacc[nb * 4 + e0], sacc[nb * 4 + e0 + 1]));
  const float mn = fmaxf(m, mx * qscale);
  if (mn == -INFINITY) return;  // nothing unmasked yet
  float rs = 0.f;
#pragma unroll
  for (int nb = 0; nb < 16; ++nb)
    rs += ex2f(fmaf(sacc[nb * 4 + e0], qscale, -mn)) + ex2f(fmaf(sacc[nb * 4 + e0 + 1], qscale, -mn));
  l = (m == -INFINITY ? 0.f : l * ex2f(m - mn)) + rs;
  m = mn;
}

struct S17Maps {
  CUtensorMap q;
  CUtensorMap k;
};

// Every thread keeps its own (max, sum) per row and exponentiates a step against its previous max, with no
// per-step row max (FMNMX per score, shuffles, the rescale): the step's sum is kept unless it reaches 2^64 (a
// score 64 above the held max; inf / NaN while nothing was held), and only then the step is redone against its
// own thread-local max. The quad's pairs are merged at the end.
template <typename T>
__global__ void __launch_bounds__(kS17Threads, 1)
    prefill_stats_v17_kernel(const KascadePrefillShape s, float* __restrict__ statsOut,
                             const __grid_constant__ S17Maps maps) {
  constexpr int D = 128;
  constexpr int TILE = kS17Keys * D;
  constexpr int NA = 64;
  constexpr unsigned kTileBytes = TILE * sizeof(T);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem_base = smem_raw + ((1024 - (tma::smem_u32(smem_raw) & 1023)) & 1023);
  T* Qs = reinterpret_cast<T*>(smem_base);
  T* Ks = Qs + kS17Rows * D;
  float* Merge = reinterpret_cast<float*>(Ks + kS17Stages * TILE);  // [128 rows][2]: parity 1's (max, sum)
  uint64_t* bars = reinterpret_cast<uint64_t*>(Merge + kS17Rows * 2);
  uint64_t* qFull = bars;
  uint64_t* full = bars + 1;
  uint64_t* empty = full + kS17Stages;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wgi = warp >> 2;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z, j = blockIdx.y;
  const PrefillV9Block blk = prefill_v9_block(s, static_cast<int>(blockIdx.x), j);
  const int h = blk.head, q0 = blk.queryBlock * kS17Rows;
  const int listLen = min(n, s.queryStart + q0 + kS17Rows);
  const int steps = (listLen + kS17Keys - 1) / kS17Keys;

  if (tid == 0) {
    tma::mbar_init(qFull, 1);
    for (int x = 0; x < kS17Stages; ++x) {
      tma::mbar_init(full + x, 1);
      tma::mbar_init(empty + x, 256);  // the two warpgroups of the step's parity
    }
    tma::mbar_fence_init();
  }
  __syncthreads();

  if (wgi == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (warp == 0 && lane == 0) {
      const int kvRow = b * G + j;
      tma::mbar_arrive_expect_tx(qFull, kS17Rows * D * sizeof(T));
      tma::copy_3d(Qs, &maps.q, 0, q0, b * H + h, qFull);
      tma::copy_3d(Qs + kS17Rows * 64, &maps.q, 64, q0, b * H + h, qFull);
      for (int i = 0; i < steps; ++i) {
        const int sg = i % kS17Stages;
        if (i >= kS17Stages) tma::mbar_wait(empty + sg, static_cast<unsigned>(i / kS17Stages - 1) & 1);
        tma::mbar_arrive_expect_tx(full + sg, kTileBytes);
        tma::copy_3d(Ks + sg * TILE, &maps.k, 0, i * kS17Keys, kvRow, full + sg);
        tma::copy_3d(Ks + sg * TILE + kS17Keys * 64, &maps.k, 64, i * kS17Keys, kvRow, full + sg);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 112;\n" ::: "memory");  // 128 x 24 + 512 x 112 <= 640 x 96
  const int cw = wgi - 1, rh = cw & 1, kp = cw >> 1, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  const int r0 = rh * 64 + wl * 16 + row;  // this thread's block rows r0, r0 + 8
  const int qi0 = q0 + r0, qi1 = qi0 + 8;
  const int pos0 = s.queryStart + qi0, pos1 = pos0 + 8;
  const int warpFirst = s.queryStart + q0 + rh * 64 + wl * 16;  // the warp's first query position
  const float qscale = s.scale * kLog2e;
  const T* qw = Qs + rh * 64 * 64;  // this warpgroup's 64 rows in each region
  // Turns over the ordinals 2 i + rh of the steps' products (warpgroup cw = ordinal % 4).
  const tma::Turns turns(2, cw, kS17Consumers);

  float sacc[NA];
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  tma::mbar_wait(qFull, 0);
#pragma unroll 1
  for (int i = kp; i < steps; i += 2) {
    const int sg = i % kS17Stages;
    tma::mbar_spin(full + sg, static_cast<unsigned>(i / kS17Stages) & 1);
    const T* ks = Ks + sg * TILE;
    turns.begin(2 * i + rh);
    issue_ab(sacc, qw, kS17Rows, ks, kS17Keys);
    turns.end(2 * i + rh, 2 * steps);
    wait0();
    pin<NA>(sacc);
    tma::mbar_arrive(empty + sg);
    // Causal mask (only on steps that cross the warp's diagonal or the end), then the online (max, sum).
    const int kFirst = i * kS17Keys;
    if (kFirst + kS17Keys - 1 > warpFirst || kFirst + kS17Keys > listLen)
      mask_causal<16>(sacc, kFirst, quad, pos0, pos1, listLen);
    stale_row(sacc, 0, qscale, m0, l0);
    stale_row(sacc, 2, qscale, m1, l1);
  }
  // The quad's thread-local pairs.
#pragma unroll
  for (int o = 1; o <= 2; o <<= 1) {
    merge_ml(m0, l0, __shfl_xor_sync(0xffffffffu, m0, o), __shfl_xor_sync(0xffffffffu, l0, o));
    merge_ml(m1, l1, __shfl_xor_sync(0xffffffffu, m1, o), __shfl_xor_sync(0xffffffffu, l1, o));
  }
  // Parity 1 hands its (max, sum) to parity 0 (named barrier 1: the four consumer warpgroups).
  if (kp == 1 && quad == 0) {
    Merge[r0 * 2] = m0;
    Merge[r0 * 2 + 1] = l0;
    Merge[(r0 + 8) * 2] = m1;
    Merge[(r0 + 8) * 2 + 1] = l1;
  }
  asm volatile("bar.sync 1, 512;\n" ::: "memory");
  if (kp == 1 || quad != 0) return;
  const size_t qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);
  merge_ml(m0, l0, Merge[r0 * 2], Merge[r0 * 2 + 1]);
  merge_ml(m1, l1, Merge[(r0 + 8) * 2], Merge[(r0 + 8) * 2 + 1]);
  if (qi0 < Q) {
    statsOut[(qBase + qi0) * 2] = m0;
    statsOut[(qBase + qi0) * 2 + 1] = l0;
  }
  if (qi1 < Q) {
    statsOut[(qBase + qi1) * 2] = m1;
    statsOut[(qBase + qi1) * 2 + 1] = l1;
  }
}

template <typename T>
cudaError_t launch_s17_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = s17_smem_bytes<T>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_stats_v17_kernel<T>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  S17Maps maps;
  const int n = s.queryStart + s.queries;
  if (!tma_encode(&maps.q, s.dtype, a.q, s.queries, s.queries, s.batch * s.heads, kS17Rows) ||
      !tma_encode(&maps.k, s.dtype, a.k, n, s.capacity, s.batch * s.kvHeads, kS17Keys))
    return cudaErrorNotSupported;
  const PrefillGrid grid = prefill_v9_grid(s);
  prefill_stats_v17_kernel<T>
      <<<dim3(grid.x, grid.y, grid.z), kS17Threads, smem, st>>>(s, a.stats, maps);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_prefill_stats_v17(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  if (s.headDim != 128) return cudaErrorInvalidValue;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t { return launch_s17_t<T>(s, a, st); });
}

}  // namespace pf
}  // namespace kascade
