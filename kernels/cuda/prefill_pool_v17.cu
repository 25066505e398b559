// Session 7: the same kernel also runs as pools v53 / v54 (the select fused into each CTA: it selects the row it
// has just pooled) and v55 (each row's largest score written beside it for the select's bins); see PoolSel below.
//
// The anchors' pooling pass, variant v19 (KASCADE_PREFILL_POOL=v19, the default: head dim 128, g = 4, statistics
// from the attention pass; elsewhere pool v1), followed by select v3 (prefill_select_v3.cu); the same kernel runs
// as pool v32 (the default since session 6: the select finishes in one pass after its second digit). Session 6's
// call B timed v35 (the row constants read as float4, stored per thread quad: 4-way bank conflicts; layer 0 392.4
// against 362.1 ms at 128k): gone. Session 6's call A
// timed v23 (a quarter of the exponentials on the FMA pipe, a degree-3 polynomial: 7.91 against 7.01 ms at 32k,
// ncu) and v27 (the pool also counting the select's first radix digit: layer 0 374.7 against 360.1 ms at 128k):
// both slower, both gone. Session 5's calls also timed three consumer warpgroups (v17: 7.76 against 6.93 ms at
// 32k, ncu), three that each issue a step ahead (v22: 7.68), four without the turns (v20: 7.11) and with an
// eighth of the exponentials on the FMA pipe (v21: 7.47, a degree-5 polynomial); all slower, all gone (v18 = v19
// with the old select is gone too). Same output as pool v1:
// S[j,t](x) = sum over the group's 4 x 32 query rows of exp2(l(x) - c_row), c_row = M_row + log2(L_row), x < s_t.
//
// Why: per 64 keys a pooling step is 8 wgmma m64n128k16 (about 512 tensor-core cycles of an SM) against 8192
// exponentials (about 512 MUFU cycles of the warpgroup's four warps); pool v12's two consumer warpgroups reach
// about 56 % of each (ncu, session 4), as if the two took turns. Here NC = 4 consumer warpgroups
// take the 64-key steps round-robin (step i to warpgroup i % NC) and issue their products in step order
// (prefill_tma.cuh's Turns), so while one warpgroup exponentiates the others' products are queued on the tensor
// cores, and each SM sub-partition's MUFU has NC warps to feed it.
//
// pool_v17_kernel<T, NC>: grid (tiles, pairs in this pass), the last (longest) tiles first; one CTA = a
// (sequence, KV head) pair's tile t; 128 (NC + 1) threads:
//   - warpgroup 0, the producer (setmaxnreg 24): one thread issues TMA tensor copies (128-byte swizzle) of the
//     tile's query rows once (row r = head 4 j + r / 32, query 32 t + r % 32: 4 heads x 2 boxes of 64 x 32) and of
//     K in 64-key steps (2 boxes of 64 x 64) into a 2 NC-stage ring, full / empty mbarriers per stage.
//   - warpgroups 1 .. NC, the consumers (setmaxnreg 160 / 112): step i = keys 64 i .. + 63: S^T = K Q^T (8 wgmma
//     m64n128k16, both operands in shared memory), a key's 128 query rows in one thread quad; the stage is
//     released once the product is done, then the exponentials and row sums, one pooled score per key.
// Shared memory: Q 32 KB + 2 NC x 16 KB + 512 B of row constants + 1 KB alignment: 129.5 KB (NC = 3), 161.5 KB
// (NC = 4); one CTA per SM.
#include "prefill_select.cuh"
#include "prefill_tma.cuh"
#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kP17Keys = 64;   // keys per step (one consumer warpgroup's)
constexpr int kP17Rows = 128;  // the tile's 4 heads x 32 queries

template <int NC>
__host__ __device__ constexpr int p17_stages() {
  return 2 * NC;
}

template <typename T, int NC>
constexpr size_t p17_smem_bytes() {
  return static_cast<size_t>(kP17Rows * 128 + p17_stages<NC>() * kP17Keys * 128) * sizeof(T) + 1024 +
         kP17Rows * 4 + 256;
}

// Registers: the producer gives all but 24 back; the consumers take no more than that frees (the block's own
// registers only: 512 threads start at 128, 640 at 96), a multiple of 8: NC = 3: 160, NC = 4: 112.
template <int NC>
__host__ __device__ constexpr int p17_consumer_regs() {
  return (65536 / (128 * (NC + 1)) / 8 * 8 * (NC + 1) - 24) / NC / 8 * 8;
}

struct P17Maps {
  CUtensorMap q;  // boxes of 64 x 32 rows
  CUtensorMap k;  // boxes of 64 x 64 rows
};

// What a pool CTA does besides pooling its row (template argument SEL):
//  - kPoolOnly (pools v19 / v32): writes the row, the select runs as its own launch;
//  - kPoolRowMax (pool v55): also writes the row's largest score to rowMax[pair, t] (for the select's bins);
//  - kFusedRadix (pool v53) / kFusedMax (pool v54): selects its own row right after pooling it (below), by the
//    radix select (select_pooled_row) or by bins under the row's largest score (select_pooled_row_max).
enum PoolSel : int { kPoolOnly = 0, kPoolRowMax = 1, kFusedRadix = 2, kFusedMax = 3 };

// The fused pools' select: where each CTA's pooled row goes (one row of rowStride floats per SM: one CTA per SM,
// so the SM's id names a row no other running CTA uses) and the selection it writes; pool v55's row maxima.
struct P17Select {
  const int* counts;  // [tiles]
  int kMax;
  int* indices;  // [pairs, tiles, kMax]
  int slots;     // rows in `pooled` (the device's SM count)
  size_t rowStride;
  float* rowMax;  // kPoolRowMax: [pairs, tiles]
};

__device__ __forceinline__ unsigned sm_id() {
  unsigned r;
  asm volatile("mov.u32 %0, %%smid;\n" : "=r"(r));
  return r;
}

// Fused (pools v53 / v54): the producer is the last warpgroup (so the consumers are threads 0 .. 128 NC - 1,
// what the select's block scan indexes), the row goes to the SM's slot and, once pooled, the consumers select its
// counts[t] largest (prefill_select.cuh) in the K ring's shared memory; tiles whose selection is every earlier key
// (or none) skip the pool. With the row maximum (v54 / v55) each thread keeps the largest score it wrote; the
// CTA's is an atomicMax over their bit patterns (scores >= 0 order like them).
template <typename T, int NC, int SEL = kPoolOnly>
__global__ void __launch_bounds__(128 * (NC + 1), 1)
    pool_v17_kernel(const KascadePrefillShape s, const __grid_constant__ P17Maps maps, const float* __restrict__ stats,
                    float* __restrict__ pooled, int pairBase, size_t perPair, int denseLayout, P17Select sel) {
  constexpr int D = 128;
  constexpr int STAGES = p17_stages<NC>();
  constexpr int TILE = kP17Keys * D;
  constexpr int NA = 64;
  constexpr unsigned kTileBytes = TILE * sizeof(T);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem_base = smem_raw + ((1024 - (tma::smem_u32(smem_raw) & 1023)) & 1023);
  T* Qs = reinterpret_cast<T*>(smem_base);
  T* Ks = Qs + kP17Rows * D;
  float* Cs = reinterpret_cast<float*>(Ks + STAGES * TILE);
  uint64_t* bars = reinterpret_cast<uint64_t*>(Cs + kP17Rows);
  uint64_t* qFull = bars;
  uint64_t* full = bars + 1;
  uint64_t* empty = full + STAGES;

  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y, b = pair / G, j = pair % G;
  const int st = s.queryStart + t * kT;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wgi = warp >> 2;
  constexpr bool FUSED = SEL == kFusedRadix || SEL == kFusedMax;
  constexpr bool ROWMAX = SEL == kPoolRowMax || SEL == kFusedMax;
  constexpr int kProducer = FUSED ? NC : 0;  // the producer warpgroup's index
  unsigned* cmax = reinterpret_cast<unsigned*>(empty + STAGES);  // ROWMAX: the CTA's largest score (bits)
  int selK = 0;
  int* selOut = nullptr;
  if (FUSED) {
    selK = min(max(__ldg(sel.counts + t), 0), min(st, sel.kMax));
    selOut = sel.indices + (static_cast<size_t>(pair) * tiles + t) * sel.kMax;
    if (select_trivial_row(selOut, selK, st, sel.kMax, tid, blockDim.x)) return;
  }
  if (st == 0) return;
  const int steps = (st + kP17Keys - 1) / kP17Keys;

  if (tid == 0) {
    tma::mbar_init(qFull, 1);
    for (int x = 0; x < STAGES; ++x) {
      tma::mbar_init(full + x, 1);
      tma::mbar_init(empty + x, 128);  // the step's one consumer warpgroup
    }
    tma::mbar_fence_init();
    if (ROWMAX) *cmax = 0u;
  }
  __syncthreads();

  if (wgi == kProducer) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (warp == kProducer * 4 && lane == 0) {
      tma::mbar_arrive_expect_tx(qFull, kP17Rows * D * sizeof(T));
      for (int hh = 0; hh < 4; ++hh)
        for (int c = 0; c < 2; ++c)
          tma::copy_3d(Qs + c * kP17Rows * 64 + hh * kT * 64, &maps.q, c * 64, t * kT, b * H + j * 4 + hh, qFull);
      for (int i = 0; i < steps; ++i) {
        const int sg = i % STAGES;
        if (i >= STAGES) tma::mbar_wait(empty + sg, static_cast<unsigned>(i / STAGES - 1) & 1);
        tma::mbar_arrive_expect_tx(full + sg, kTileBytes);
        tma::copy_3d(Ks + sg * TILE, &maps.k, 0, i * kP17Keys, b * G + j, full + sg);
        tma::copy_3d(Ks + sg * TILE + kP17Keys * 64, &maps.k, 64, i * kP17Keys, b * G + j, full + sg);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(p17_consumer_regs<NC>()) : "memory");
  const int cw = FUSED ? wgi : wgi - 1, ctid = FUSED ? tid : tid - 128, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  // Row constants c = M + log2(L) (+inf past the chunk: those rows add nothing).
  if (ctid < kP17Rows) {
    const int rr = ctid, hh = rr / kT, qi = t * kT + rr % kT;
    float c = INFINITY;
    if (qi < Q) {
      const size_t qrow = (static_cast<size_t>(b) * H + j * 4 + hh) * static_cast<size_t>(Q) + qi;
      c = stats[qrow * 2] + log2f(stats[qrow * 2 + 1]);
    }
    Cs[rr] = c;
  }
  asm volatile("bar.sync 1, %0;\n" ::"n"(128 * NC) : "memory");  // the consumers' Cs (barriers 2 ..: the turns)
  float* rowp = denseLayout ? pooled + (static_cast<size_t>(pair) * tiles + t) * n
                            : pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t);
  if (FUSED) {
    const unsigned slot = sm_id();
    if (slot >= static_cast<unsigned>(sel.slots)) __trap();  // more SM ids than the workspace has rows for
    rowp = pooled + slot * sel.rowStride;
  }
  const float qscale = s.scale * kLog2e;
  const tma::Turns turns(2, cw, NC);

  // Step i's product into acc (waits for its K and, with TURNS, for step i - 1's issue).
  auto issue = [&](float* acc, int i) {
    const int sg = i % STAGES;
    tma::mbar_spin(full + sg, static_cast<unsigned>(i / STAGES) & 1);
    const T* ks = Ks + sg * TILE;
    turns.begin(i);
    issue_ab(acc, ks, kP17Keys, Qs, kP17Rows);
    turns.end(i, steps);
  };
  // Step i's pooled scores from its completed product.
  float vmax = 0.f;  // ROWMAX: the largest score this thread wrote
  auto pool_step = [&](const float* acc, int i) {
    float p0, p1;
    pooled_pair<16>(acc, Cs, qscale, quad, p0, p1);
    const int x0 = i * kP17Keys + wl * 16 + row, x1 = x0 + 8;
    if (quad == 0) {
      if (x0 < st) {
        rowp[x0] = p0;
        if (ROWMAX) vmax = fmaxf(vmax, p0);
      }
      if (x1 < st) {
        rowp[x1] = p1;
        if (ROWMAX) vmax = fmaxf(vmax, p1);
      }
    }
  };

  float acc[NA];
  tma::mbar_wait(qFull, 0);
#pragma unroll 1
  for (int i = cw; i < steps; i += NC) {
    issue(acc, i);
    wait0();
    pin<NA>(acc);
    tma::mbar_arrive(empty + i % STAGES);
    pool_step(acc, i);
  }
  if (ROWMAX) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, o));
    if (lane == 0) atomicMax(cmax, __float_as_uint(vmax));
  }
  if (SEL == kPoolRowMax) {
    asm volatile("bar.sync 1, %0;\n" ::"n"(128 * NC) : "memory");  // every consumer's atomicMax is in
    if (ctid == 0) sel.rowMax[static_cast<size_t>(pair) * tiles + t] = __uint_as_float(*cmax);
  }
  if (FUSED) {
    // After this barrier every step's copy has been consumed (the K ring is free for the select's shared
    // memory) and the row's writes are visible to every consumer; the producer warps have exited (a barrier
    // waits for non-exited threads only).
    __syncthreads();
    unsigned* w = reinterpret_cast<unsigned*>(Ks);
    constexpr int kH = kSelMaxBins;  // histogram words (2048 used by the radix select)
    const SelectShared sh{w, w + kH, w + kH + 16, reinterpret_cast<int*>(w + kH + 18), w + kH + 32,
                          reinterpret_cast<int*>(w + kH + 32 + kSel3Cand)};
    const unsigned* u = reinterpret_cast<const unsigned*>(rowp);
    if (SEL == kFusedMax)
      select_pooled_row_max<128 * NC, false>(u, st, selK, selOut, sh, *cmax);
    else
      select_pooled_row<128 * NC, true, false>(u, st, selK, selOut, sh);
  }
}

template <typename T, int NC, int SEL>
cudaError_t launch_p17_t(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                         float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, const P17Select& sel,
                         cudaStream_t st) {
  constexpr size_t smem = p17_smem_bytes<T, NC>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(pool_v17_kernel<T, NC, SEL>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  P17Maps maps;
  const int n = s.queryStart + s.queries;
  if (!tma_encode(&maps.q, s.dtype, q, s.queries, s.queries, s.batch * s.heads, kT) ||
      !tma_encode(&maps.k, s.dtype, k, n, s.capacity, s.batch * s.kvHeads, kP17Keys))
    return cudaErrorNotSupported;
  pool_v17_kernel<T, NC, SEL><<<dim3(tiles_of(s), pairs), 128 * (NC + 1), smem, st>>>(
      s, maps, stats, pooled, pairBase, perPair, denseLayout, sel);
  return cudaGetLastError();
}

}  // namespace

bool pool_v17_supports(const KascadePrefillShape& s) { return s.headDim == 128 && s.heads == 4 * s.kvHeads; }

cudaError_t launch_pool_v17(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                            float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, float* rowMax,
                            cudaStream_t st) {
  if (!pool_v17_supports(s)) return cudaErrorInvalidValue;
  P17Select sel{};
  sel.rowMax = rowMax;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    return rowMax ? launch_p17_t<T, 4, kPoolRowMax>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, sel, st)
                  : launch_p17_t<T, 4, kPoolOnly>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, sel, st);
  });
}

cudaError_t launch_pool_select_v17(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                                   float* rows, int slots, size_t rowStride, const int* counts, int kMax,
                                   int* indices, bool byMax, cudaStream_t st) {
  if (!pool_v17_supports(s) || slots < 1 || rowStride < static_cast<size_t>(s.queryStart + s.queries))
    return cudaErrorInvalidValue;
  const P17Select sel{counts, kMax, indices, slots, rowStride, nullptr};
  const int pairs = s.batch * s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    return byMax ? launch_p17_t<T, 4, kFusedMax>(s, q, k, stats, rows, 0, pairs, 0, 0, sel, st)
                 : launch_p17_t<T, 4, kFusedRadix>(s, q, k, stats, rows, 0, pairs, 0, 0, sel, st);
  });
}

}  // namespace pf
}  // namespace kascade
