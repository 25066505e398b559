// The anchors' pooling pass of pools v60, v67 and v75 (KASCADE_PREFILL_POOL=v60 / v67 / v75; v75 the default since
// session 11's call B, v67 from session 9 to then: head dim 128, g = 4, statistics from the attention pass; elsewhere
// pool v1), followed by select v3
// (prefill_select_v3.cu). Both write each row's largest score (ROWMAX below, session 7's v56), under which the
// select bins the row (session 6's v32 without it: three passes over the row). Session 5's v19 (the same pool, a
// four-pass select) is gone.
// Session 7 also timed this kernel selecting its own row right after pooling it (pools v53 / v54: the rows in one
// slot per SM, read back from L2; 128k, ncu: 137-149 ms per op for pool + select against v32's 112 + 11.5): lost,
// gone. Session 6's
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
// Pool v67 (session 9's default): LO below (the wgmma descriptors as constant offsets from two
// low words: 11 % fewer instructions than v60) and, where the launch has at least kP17WideCtas four-tile CTAs, TPC = 4
// below (consumer warpgroup w pools tile t0 + w over every step, each K step loaded once for four tiles: a quarter of
// the K copies and L2 reads per pooled score, 195 KB of shared memory; fewer CTAs run one tile each, as v60).
// Session 9's call B, 32k (ncu): 6.75 ms against v60's 7.06 (11.74 against 11.95 M cycles, L2 bytes 9.3 against 32.9
// GB); 8k (four-tile CTAs for every launch, 512 CTAs): layer 0 1448.7 against 1385.6 us, hence the threshold. Its
// candidates v64 (LO alone: 6.98 ms), v65 (both, at every size) and v66 (v64 with the row constants read as float4:
// 7.06 ms, slower than v64) are gone, as is call A's v63 (TPC = 4 alone, its products serialised by ptxas: see step).
// Session 10's call A (eae88d3) timed pool v68 (S = Q K^T with the tile's 128 query rows held in registers as the
// wgmma A operand, K the only shared-memory operand, two m64n64 halves per step, the pooled sums reduced across lanes
// and warps; three consumer warpgroups, the most that 64 registers of Q allow) and v69 (the same on two warpgroups,
// each half's next products issued early). 32k, ncu: v68 13.54 M cycles, tensor and MUFU 60.1 %, L1 43 % (v67: 11.66 M,
// 69.8 %, 73.8 %); v69 18.86 M, 43.3 %. Layer 0 at 128k 361.0 (v68) and 394.7 ms (v69) against v67's 348.3: fewer
// warpgroups, less overlap, whatever the shared-memory traffic. Both gone. Five consumer warpgroups (NC = 5) do not
// compile: 21 warps put six on one SM sub-partition (16k registers), 80 registers each, too few for the m64n128
// accumulator (ptxas C7602).
// Session 11's call A (b896e8b) timed four-tile pools that split each step's product into two m64n64 halves (query rows
// 0-63 / 64-127, one commit group each, the first half's exponentials under the second half's product): v71 (per step),
// v72 (v71 with each step's shuffles and stores deferred under the next step's product), v74 (the halves of a pair
// of steps issued at different points, 3 of 4 halves exponentiated under a product, 32 bytes of spills), and v73 (v67
// with v72's deferral alone). 32k, ncu: v71 14.46 M cycles, tensor and MUFU 56.1 %; v72 14.83 M, 54.8 %; v74 16.49 M,
// 49.3 %; v73 11.79 M, 69.0 % (v67: 11.66 M, 69.8 %). Layer 0 at 128k: 365.3, 372.7, 385.8 and 352.1 ms against v67's
// 350.7. An m64n64 product with both operands in shared memory reads 128 B per clock at the tensor pipe's rate, all
// the shared memory has (L1 stayed at 73 % while the tensor pipe fell to 56 %); a fully rotating version (a half in
// flight across the loop's back edge) made ptxas serialise the wgmma (C7514). All gone.
// Session 12's call A (8aa10f0) timed the four-tile pool with no producer warpgroup (the consumer warpgroups alone, so
// each thread kept the producer's registers; thread 0 copied Q and the first stages, the last warpgroup in turn order
// refilled the ring): v76 (five consumer warpgroups and five tiles per CTA, 96 registers, a 3-stage ring), v77 (four
// at 128 registers with all 32 row constants in registers), v78 (v76 with 8 constants in registers). 32k, ncu: 12.26,
// 12.92 and 12.72 M cycles against v75's 11.56 (tensor 66.4, 62.9, 64.0 against 70.3 %); layer 0 at 128k 353.7,
// 360.1, 355.9 ms against 347.0 (with five warpgroups the turn barrier held 10.3 % of the warps' stall samples against
// 4.5 %). Call B (f827b59) timed v75 / v67 with each key's pooled terms exponentiated first and added as a pairwise
// tree (v79 / v81) and with the exponentials pinned before the adds (v80 / v82): 11.58 and 11.61 M cycles against
// 11.57 (v75; ptxas issues v79's and v80's MUFUs back to back, the same code), layer 0 350.4-353.2 ms against 352.3.
// All gone.
//
// pool_v17_kernel<T, NC, TPC = 1>: grid (tiles, pairs in this pass), the last (longest) tiles first; one CTA = a
// (sequence, KV head) pair's tile t; 128 (NC + 1) threads:
//   - warpgroup 0, the producer (setmaxnreg 24): one thread issues TMA tensor copies (128-byte swizzle) of the
//     tile's query rows once (row r = head 4 j + r / 32, query 32 t + r % 32: 4 heads x 2 boxes of 64 x 32) and of
//     K in 64-key steps (2 boxes of 64 x 64) into a 2 NC-stage ring, full / empty mbarriers per stage.
//   - warpgroups 1 .. NC, the consumers (setmaxnreg 160 / 112): step i = keys 64 i .. + 63: S^T = K Q^T (8 wgmma
//     m64n128k16, both operands in shared memory), a key's 128 query rows in one thread quad; the stage is
//     released once the product is done, then the exponentials and row sums, one pooled score per key.
// Shared memory: Q 32 KB + 2 NC x 16 KB + 512 B of row constants + 1 KB alignment: 129.5 KB (NC = 3), 161.5 KB
// (NC = 4); one CTA per SM.
#include <cstdlib>
#include <type_traits>

#include "prefill_tma.cuh"
#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kP17Keys = 64;   // keys per step (one consumer warpgroup's)
constexpr int kP17Rows = 128;  // the tile's 4 heads x 32 queries
// Pool v67: four tiles per CTA from this many four-tile CTAs per launch on (32k: 2048, a win in session 9's call B;
// 8k: 512, a loss; 16k, 1024, and shorter contexts run one tile per CTA).
constexpr long long kP17WideCtas = 2048;

// TPC tiles per CTA: 1 (pool v60, and v67 on small launches: the consumers take a tile's steps round-robin) or NC
// (pool v67: consumer warpgroup w pools tile t0 + w, all of them over every K step, loaded once for the NC tiles).
template <int NC, int TPC>
__host__ __device__ constexpr int p17_stages() {
  return TPC == 1 ? 2 * NC : 4;
}

template <typename T, int NC, int TPC>
constexpr size_t p17_smem_bytes() {
  return static_cast<size_t>(TPC * kP17Rows * 128 + p17_stages<NC, TPC>() * kP17Keys * 128) * sizeof(T) + 1024 +
         TPC * kP17Rows * 4 + 256;
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

// ROWMAX (pool v56): each thread keeps the largest score it wrote; a tile's is an atomicMax over their bit
// patterns (scores >= 0 order like them), written to rowMax[pair, t] for the select's bins.
// PROBE (measurement only, KASCADE_PREFILL_POOL_PROBE; the pooled scores are wrong): 1 = no exponentials (a step's
// pooled pair is two accumulator entries: what the products, copies and turns take alone), 2 = no products (the
// exponentials of a zero accumulator: what the MUFU and the consumers' instructions take alone).
// LO (pool v67): each step's wgmma descriptors as constant offsets from two low words (issue_ab_lo) instead of the
// address arithmetic of issue_ab per slice.
// CREG (pool v75, four tiles per CTA only): each consumer thread holds the row constants of the first 6 of its 16
// column blocks (12 of the 32 its quad needs; its warpgroup's tile is fixed) in registers, loaded once, so a step
// issues 10 instead of 16 LDS.64 per warp (7 blocks, or all 16, spill at the consumers' 112 registers). The same
// sums in the same order. Session 11's call B (7e6e148), 32k, ncu: 11.57 against v67's 11.66 M cycles, tensor and
// MUFU 70.3 against 69.8 %, L1 67.7 against 73.8 %; 128k layer 0 345.3 against 347.2 ms.
template <typename T, int NC, int TPC, bool ROWMAX, bool LO = false, int PROBE = 0, bool CREG = false>
__global__ void __launch_bounds__(128 * (NC + 1), 1)
    pool_v17_kernel(const KascadePrefillShape s, const __grid_constant__ P17Maps maps, const float* __restrict__ stats,
                    float* __restrict__ pooled, int pairBase, size_t perPair, int denseLayout,
                    float* __restrict__ rowMax) {
  static_assert(TPC == 1 || TPC == NC, "one tile per CTA, or one per consumer warpgroup");
  constexpr int D = 128;
  constexpr int STAGES = p17_stages<NC, TPC>();
  constexpr int TILE = kP17Keys * D;
  constexpr int NA = 64;
  constexpr int QROWS = TPC * kP17Rows;
  constexpr unsigned kTileBytes = TILE * sizeof(T);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem_base = smem_raw + ((1024 - (tma::smem_u32(smem_raw) & 1023)) & 1023);
  T* Qs = reinterpret_cast<T*>(smem_base);  // TPC tiles of [2 regions][128 rows][64]
  T* Ks = Qs + QROWS * D;
  float* Cs = reinterpret_cast<float*>(Ks + STAGES * TILE);
  uint64_t* bars = reinterpret_cast<uint64_t*>(Cs + QROWS);
  uint64_t* qFull = bars;
  uint64_t* full = bars + 1;
  uint64_t* empty = full + STAGES;

  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int tiles = tiles_of(s);
  // This CTA's tiles t0 .. t0 + ntl - 1 (the longest first over the grid).
  const int t0 = ((tiles + TPC - 1) / TPC - 1 - static_cast<int>(blockIdx.x)) * TPC;
  const int ntl = min(TPC, tiles - t0);
  const int pair = pairBase + blockIdx.y, b = pair / G, j = pair % G;
  const int stLast = s.queryStart + (t0 + ntl - 1) * kT;
  if (stLast == 0) return;
  const int steps = (stLast + kP17Keys - 1) / kP17Keys;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wgi = warp >> 2;
  unsigned* cmax = reinterpret_cast<unsigned*>(empty + STAGES);  // ROWMAX: each tile's largest score (bits)

  if (tid == 0) {
    tma::mbar_init(qFull, 1);
    for (int x = 0; x < STAGES; ++x) {
      tma::mbar_init(full + x, 1);
      tma::mbar_init(empty + x, TPC == 1 ? 128 : 128 * NC);  // the warpgroups that take the step
    }
    tma::mbar_fence_init();
    if (ROWMAX)
      for (int u = 0; u < TPC; ++u) cmax[u] = 0u;
  }
  __syncthreads();

  if (wgi == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (warp == 0 && lane == 0) {
      tma::mbar_arrive_expect_tx(qFull, ntl * kP17Rows * D * sizeof(T));
      for (int u = 0; u < ntl; ++u)
        for (int hh = 0; hh < 4; ++hh)
          for (int c = 0; c < 2; ++c)
            tma::copy_3d(Qs + (u * 2 + c) * kP17Rows * 64 + hh * kT * 64, &maps.q, c * 64, (t0 + u) * kT,
                         b * H + j * 4 + hh, qFull);
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
  const int cw = wgi - 1, ctid = tid - 128, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  // Row constants c = M + log2(L) of the CTA's tiles (+inf past the chunk: those rows add nothing).
  if (ctid < ntl * kP17Rows) {
    const int rr = ctid % kP17Rows, hh = rr / kT, qi = (t0 + ctid / kP17Rows) * kT + rr % kT;
    float c = INFINITY;
    if (qi < Q) {
      const size_t qrow = (static_cast<size_t>(b) * H + j * 4 + hh) * static_cast<size_t>(Q) + qi;
      c = stats[qrow * 2] + log2f(stats[qrow * 2 + 1]);
    }
    Cs[ctid] = c;
  }
  asm volatile("bar.sync 1, %0;\n" ::"n"(128 * NC) : "memory");  // the consumers' Cs (barriers 2 ..: the turns)
  // This warpgroup's tile: the CTA's (TPC = 1) or tile t0 + cw (TPC = NC; none past the chunk's last tile).
  const int u = TPC == 1 ? 0 : cw;
  const int t = t0 + u, st = s.queryStart + t * kT;
  const int mySteps = u < ntl ? (st + kP17Keys - 1) / kP17Keys : 0;
  const T* Qu = Qs + u * kP17Rows * D;
  const float* Cu = Cs + u * kP17Rows;
  float* rowp = denseLayout ? pooled + (static_cast<size_t>(pair) * tiles + t) * n
                            : pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t);
  const float qscale = s.scale * kLog2e;
  const tma::Turns turns(2, cw, NC);

  const uint32_t kLo = tma::k_desc_lo(Ks), qLo = tma::k_desc_lo(Qu);  // LO: stage 0's and this tile's
  float vmax = 0.f;  // ROWMAX: the largest score this thread wrote
  constexpr int NR = CREG ? 6 : 1;  // CREG: column blocks whose constants stay in registers
  float2 creg[NR];                   // CREG: Cu[nb * 8 + quad * 2 .. + 1], nb < NR
  if constexpr (CREG) {
    static_assert(TPC == NC, "the row constants in registers need this warpgroup's own tile");
#pragma unroll
    for (int nb = 0; nb < NR; ++nb) creg[nb] = *reinterpret_cast<const float2*>(Cu + nb * 8 + quad * 2);
  }
  float acc[NA];
  if (PROBE == 2)  // distinct values, so the compiler cannot share one exponential between two of them
    for (int x = 0; x < NA; ++x) acc[x] = static_cast<float>(ctid * NA + x) * -1e-3f;
  tma::mbar_wait(qFull, 0);
  // Step i (keys 64 i .. + 63) as turn `slot` of `slots`: S^T = K Q^T issued in turn order, the stage released once
  // the product is done, then the step's pooled scores (ON: this warpgroup's tile has the step; else the turn and
  // the release only). ON is a compile-time constant: a wgmma under a run-time condition makes ptxas serialise
  // every product (C7518: a wait after each of the eight; session 9's call A timed pool v63 that way, 9.64 against
  // v60's 6.90 ms at 32k).
  auto step = [&](int i, int slot, int slots, auto onTag) {
    constexpr bool on = decltype(onTag)::value;
    const int sg = i % STAGES;
    if constexpr (on) tma::mbar_spin(full + sg, static_cast<unsigned>(i / STAGES) & 1);
    turns.begin(slot);
    if constexpr (on && PROBE != 2) {
      if constexpr (LO)
        issue_ab_lo<T, kP17Keys, kP17Rows>(acc, kLo + sg * (kTileBytes >> 4), qLo);
      else
        issue_ab(acc, Ks + sg * TILE, kP17Keys, Qu, kP17Rows);
    }
    turns.end(slot, slots);
    if constexpr (on) {
      wait0();
      pin<NA>(acc);
    }
    tma::mbar_arrive(empty + sg);
    if constexpr (!on) return;
    float p0, p1;
    if (PROBE == 1) {
      p0 = fabsf(acc[0]);
      p1 = fabsf(acc[2]);
    } else if constexpr (CREG) {
      pooled_pair_reg<16, NR>(acc, creg, Cu, qscale, quad, p0, p1);
    } else {
      pooled_pair<16>(acc, Cu, qscale, quad, p0, p1);
    }
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
  if constexpr (TPC == 1) {
#pragma unroll 1
    for (int i = cw; i < steps; i += NC) step(i, i, steps, std::true_type{});
  } else {
    // This tile's steps, then the turns and releases of the longer tiles' last steps.
    int i = 0;
#pragma unroll 1
    for (; i < mySteps; ++i) step(i, i * NC + cw, steps * NC, std::true_type{});
#pragma unroll 1
    for (; i < steps; ++i) step(i, i * NC + cw, steps * NC, std::false_type{});
  }
  if (ROWMAX) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, o));
    if (lane == 0) atomicMax(cmax + u, __float_as_uint(vmax));
    asm volatile("bar.sync 1, %0;\n" ::"n"(128 * NC) : "memory");  // every consumer's atomicMax is in
    if (ctid < ntl && s.queryStart + (t0 + ctid) * kT > 0)
      rowMax[static_cast<size_t>(pair) * tiles + t0 + ctid] = __uint_as_float(cmax[ctid]);
  }
}

template <typename T, int NC, int TPC, bool ROWMAX, bool LO = false, int PROBE = 0, bool CREG = false>
cudaError_t launch_p17_t(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                         float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, float* rowMax,
                         cudaStream_t st) {
  constexpr size_t smem = p17_smem_bytes<T, NC, TPC>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(pool_v17_kernel<T, NC, TPC, ROWMAX, LO, PROBE, CREG>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  P17Maps maps;
  const int n = s.queryStart + s.queries;
  if (!tma_encode(&maps.q, s.dtype, q, s.queries, s.queries, s.batch * s.heads, kT) ||
      !tma_encode(&maps.k, s.dtype, k, n, s.capacity, s.batch * s.kvHeads, kP17Keys))
    return cudaErrorNotSupported;
  const dim3 grid((tiles_of(s) + TPC - 1) / TPC, pairs);
  pool_v17_kernel<T, NC, TPC, ROWMAX, LO, PROBE, CREG><<<grid, 128 * (NC + 1), smem, st>>>(
      s, maps, stats, pooled, pairBase, perPair, denseLayout, rowMax);
  return cudaGetLastError();
}

template <typename T, int TPC, bool LO, bool CREG = false>
cudaError_t launch_p17_rowmax(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                              float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, float* rowMax,
                              cudaStream_t st) {
  return rowMax ? launch_p17_t<T, 4, TPC, true, LO, 0, CREG>(s, q, k, stats, pooled, pairBase, pairs, perPair,
                                                             denseLayout, rowMax, st)
                : launch_p17_t<T, 4, TPC, false, LO, 0, CREG>(s, q, k, stats, pooled, pairBase, pairs, perPair,
                                                              denseLayout, rowMax, st);
}

}  // namespace

bool pool_v17_supports(const KascadePrefillShape& s) { return s.headDim == 128 && s.heads == 4 * s.kvHeads; }

cudaError_t launch_pool_v17(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                            float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, float* rowMax,
                            int poolVariant, cudaStream_t st) {
  if (!pool_v17_supports(s)) return cudaErrorInvalidValue;
  // The probes (PROBE above): bf16, pool v60's kernel (one tile per CTA, the row maxima) only.
  const char* pe = getenv("KASCADE_PREFILL_POOL_PROBE");
  const int probe = pe ? atoi(pe) : 0;
  if ((probe == 1 || probe == 2) && poolVariant == 60 && rowMax && s.dtype == KASCADE_BF16)
    return probe == 1 ? launch_p17_t<__nv_bfloat16, 4, 1, true, false, 1>(s, q, k, stats, pooled, pairBase, pairs,
                                                                          perPair, denseLayout, rowMax, st)
                      : launch_p17_t<__nv_bfloat16, 4, 1, true, false, 2>(s, q, k, stats, pooled, pairBase, pairs,
                                                                          perPair, denseLayout, rowMax, st);
  // Pool v67's threshold: KASCADE_PREFILL_WIDE_CTAS (read at every launch; the parity job sets 1, so its small
  // chunks run four tiles per CTA too), else kP17WideCtas.
  const char* we = getenv("KASCADE_PREFILL_WIDE_CTAS");
  const long long wideFrom = we && atoll(we) > 0 ? atoll(we) : kP17WideCtas;
  const bool wide = (tiles_of(s) + 3) / 4 * static_cast<long long>(pairs) >= wideFrom;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    // Pool v75 changes the four-tile pool only; smaller launches run v67's one-tile pool (the parity job forces four
    // tiles per CTA onto every launch, so what parity checks is what the bench times at 32k and 128k).
    if (poolVariant == 75 && wide)
      return launch_p17_rowmax<T, 4, true, true>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, rowMax,
                                                 st);
    if (poolVariant == 67 && wide)
      return launch_p17_rowmax<T, 4, true>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, rowMax, st);
    if (poolVariant == 67 || poolVariant == 75)
      return launch_p17_rowmax<T, 1, true>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, rowMax, st);
    return launch_p17_rowmax<T, 1, false>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, rowMax, st);
  });
}

}  // namespace pf
}  // namespace kascade
