// Split-KV decode attention (dense, gathered/sparse, scores-only) and the split combine.
//
// Kernel attn_partial_kernel<T, D, GS, MODE, LOAD>
//   grid (splits, kvHeads, batch), block 128 threads = 4 independent warps; one block = one KV
//   head j of one sequence b, all GS query heads of its group, one contiguous range of the key
//   list (keys 0..n-1, or an index list for gather mode). GQA-aware: each K/V row is read from
//   HBM once per group, never once per query head.
//   Warp w takes the range's 16-key steps w, w+4, w+8, ...: their K (and V) rows go to the
//   warp's own shared-memory ring with 16-byte cp.async (3 stages with V, 4 without), then
//   S = Q K^T and O += P V run on the tensor cores (mma.sync m16n8k16, f32 accumulate; the
//   group's query heads are rows 0..GS-1 of the 16-row A operand, the rest zero; P is split
//   into hi + lo 16-bit halves so it keeps ~16 significant bits). Online softmax in the log2
//   domain per warp; the 4 warps merge through shared memory at the end.
//   Shared memory per block: 4 x stages x 16 x (D+8) x 2 B for K (and again for V); the +8 pad
//   puts ldmatrix's 8 rows on distinct banks.
//   Bytes: reads the listed K rows (+ V rows unless scores-only) once, q once per block;
//   writes GS x (D + 2) f32 per block, plus GS f32 logits per key when asked.
//   Variants (KascadeDecodeShape::variant bits, kascade_cuda.h; every one computes the same thing):
//   - LOAD = 0 (default): 16-byte cp.async per row chunk; bit 2 adds an L2 256-byte prefetch hint.
//   - LOAD = 1 (bit 1): one cp.async.bulk per 256-byte row (lanes 0-15 K, 16-31 V) completing on an
//     mbarrier per ring stage; masked rows copy row 0 (finite, probability 0).
//   - LOAD = 2 (bit 16, contiguous modes only): one lane issues the step's K (and V) tile as D/64 TMA
//     tensor boxes of 16 rows x 128 B with the 128-byte swizzle into 1024-byte aligned, unpadded
//     stages (ldmatrix addresses XOR the 16-byte chunk with the row); rows >= n arrive as zeros.
//   - bit 4: the last block of each (b, j) to finish (a counter per (b, j) in g_split_done, reset by
//     that block) merges the splits into `out`, so no combine kernel runs.
//   - bit 8: split 0 of each (b, j) zeroes that row's Top-k histogram and state (anchor_decode.cu).
//   - bit 32: P enters P V as one 16-bit value (the hi half alone): half the P V MMAs, P keeps ~8
//     (bf16) or ~11 (f16) significant bits, like the naive same-precision reference the parity uses.
//   - bit 128 (lean / stream-K schedule): grid = the CTAs that fit at once (occupancy x SMs, queried
//     once per kernel), 1D. The (b, j) rows' key lists, cut into 64-key tiles, are laid end to end
//     and each CTA takes an equal contiguous share (LeanPlan, decode_attention.cuh), crossing row
//     boundaries: it runs one segment per row it touches (the same per-warp pipeline; ring stages and
//     mbarrier phases carry on across segments) and writes one partial per segment, in slot
//     `cta - first CTA of the row`; the CTA with a row's last tile marks its unused slots empty.
//     Without bit 4, lean_combine_kernel merges the slots; with it, the row's last CTA to finish does.
//   - bit 4096 (programmatic dependent launch): the partial and combine kernels launch with
//     programmatic stream serialization and wait (griddepcontrol.wait) before touching global memory,
//     so their launch and prologue overlap the previous kernel's tail (back-to-back layers, graphs).
//   - bit 8192 (gathers on the split schedule): MODE kGatherLite, a 2-stage ring per warp (70 KB at
//     D 128: three CTAs per SM where kGather fits two) and as many splits per row as fill
//     those CTAs (lite_splits); the fused merge (bit 4) reads 16 slots at a time.
//   - bit 32768 (gathers): the warp-specialised gather of reuse_b1_decode.cu runs instead of this kernel.
// Kernel combine_kernel<T, D>
//   grid (batch x heads), block D threads: merges the splits' (max, sum, unnormalised out).
// Kernel lean_combine_kernel<T, D> (bit 128)
//   grid (batch x heads, head-dim slices), block 128: float4 loads, slots spread over lane groups.
#include <cstdio>
#include <cudaTypedefs.h>
#include <type_traits>
#include <utility>

#include "b1_l2.cuh"
#include "burst_writes.cuh"
#include "decode_attention.cuh"
#include "decode_device.cuh"

namespace kascade {

// Variant KASCADE_VARIANT_PREFETCH: the same 16-byte copy with an L2 256-byte prefetch hint.
__device__ __forceinline__ void cp_async16_pf(void* smem, const void* gmem, int src_bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}

// Variant KASCADE_VARIANT_TMA2D: a [16 rows][64 elements] box of a 3D tensor map (128-byte swizzle).
__device__ __forceinline__ void tma_load_3d(void* smem, const CUtensorMap* map, int c0, int c1, int c2,
                                            uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(smem_u32(smem)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
// Byte offset of 16-byte chunk `chunk` (0 .. D/8-1) of row `row` (0..15) in a TMA2D tile: D/64 boxes
// of 16 rows x 128 bytes, each 1024-byte aligned, chunks XOR-swizzled by the row within 8.
__device__ __forceinline__ uint32_t tma_tile_offset(int row, int chunk) {
  return static_cast<uint32_t>((chunk >> 3) * 2048 + row * 128 + (((chunk & 7) ^ (row & 7)) << 4));
}

// One completion counter per (sequence, KV head) for the fused combine; zero at module load and
// reset by the block that merges, so every launch finds them zero. Ops on one stream run one at a
// time (the binding has one op stream): two streams running fused ops at once would share them.
__device__ unsigned g_split_done[kMaxFusedRows];

template <int D, int MODE>
struct Cfg {
  static constexpr int kThreads = 128;          // 4 independent warps
  static constexpr int kWarpKeys = 16;          // keys per warp step
  static constexpr int kStages = MODE == kScoresOnly ? 4 : MODE == kScoresDeep ? 6 : MODE == kGatherLite ? 2 : 3;
  static constexpr int kRow = D + 8;            // padded row (elements): ldmatrix rows on distinct banks
  static constexpr int kChunksPerRow = D / 8;   // 16-byte chunks per row
  static constexpr bool kWithV = MODE != kScoresOnly && MODE != kScoresDeep;
  static constexpr int kStageElems = kWarpKeys * kRow;
  static constexpr int kWarpElems = kStages * kStageElems * (kWithV ? 2 : 1);
};

// TMA2D tiles: per warp and stage a K tile (and a V tile) of 16 rows x D, unpadded, swizzled.
template <typename T, int D, int MODE>
__host__ __device__ constexpr size_t tma_stage_bytes() {
  return size_t(Cfg<D, MODE>::kWarpKeys) * D * sizeof(T) * (Cfg<D, MODE>::kWithV ? 2 : 1);
}
// TMA2D: 1024 bytes of alignment slack, the swizzled rings, positions and barriers.
template <typename T, int D, int MODE>
__host__ __device__ constexpr size_t tma_smem_bytes() {
  using C = Cfg<D, MODE>;
  return 1024 + size_t(4) * C::kStages * (tma_stage_bytes<T, D, MODE>() + C::kWarpKeys * sizeof(int) + sizeof(uint64_t));
}
template <typename T, int D, int GS, int MODE, int LOAD>
__host__ __device__ constexpr size_t partial_smem_bytes() {
  using C = Cfg<D, MODE>;
  // K/V rings, row positions, and (bulk loaders) one 8-byte mbarrier per warp and stage.
  const size_t ring = size_t(4) * (C::kWarpElems * sizeof(T) + C::kStages * C::kWarpKeys * sizeof(int)) +
                      (LOAD ? size_t(4) * C::kStages * sizeof(uint64_t) : 0);
  const size_t tma = LOAD == 2 ? tma_smem_bytes<T, D, MODE>() : 0;
  // The 4 warps' partials.
  const size_t red = sizeof(float) * (4 * GS * D + 8 * GS);
  const size_t m = ring > red ? ring : red;
  return m > tma ? m : tma;
}
// KASCADE_VARIANT_BURST_WRITES (burst_writes.cuh): the byte budget of each warp's write stage, from the shared memory the
// TMA pass leaves over at its CTAs per SM (d 128, bf16 / f16; H200, 228 KB per SM, 1 KB reserved per CTA): the scores
// pass (its TMA layout 67.7 KB, three CTAs) ~9 KB per CTA, its 6-stage form (bit 16384: 98.7 KB, two CTAs) and layer 0
// (97.8 KB, two CTAs) ~15 KB. (Calls A and B of session 9 placed the stages past the padded cp.async ring's size, 70.8
// / 105.3 KB, which the TMA passes do not use: one CTA per SM fewer, and every burst variant ran 20-60 % slower.)
template <int MODE>
__host__ __device__ constexpr int burst_u_bytes() {
  return MODE == kDenseLogits || MODE == kScoresDeep ? 3456 : 2016;
}
// The stages sit past the pass's own shared memory (16-byte aligned), one per warp: past the TMA layout (its 1024 bytes
// of alignment slack cover any start of the aligned tiles), or past the cp.async ring.
template <typename T, int D, int GS, int MODE, int LOAD>
__host__ __device__ constexpr size_t burst_stage_offset() {
  return ((LOAD == 2 ? tma_smem_bytes<T, D, MODE>() : partial_smem_bytes<T, D, GS, MODE, LOAD>()) + 15) &
         ~static_cast<size_t>(15);
}
template <int GS, int MODE>
__host__ __device__ constexpr size_t burst_stage_bytes() {
  return size_t(4) * BurstStage<GS, burst_u_bytes<MODE>()>::kWarpBytes;
}
// Bytes of the ring region the fused combine may reuse for the group's split weights.
template <typename T, int D, int MODE>
constexpr size_t ring_bytes() {
  return size_t(4) * Cfg<D, MODE>::kWarpElems * sizeof(T);
}

// Each warp is an independent flash-decoding worker: it takes 16-key steps w, w+4, ... of the
// block's range, streams their K (and V) rows through its own cp.async ring, computes
// S = Q K^T and O += P V with mma.sync (query heads as the 16 rows of the A operand, rows >= g
// zero), and keeps its own online-softmax state; the 4 warps merge at the end.
template <typename T, int D, int GS, int MODE, int LOAD>
__global__ void __launch_bounds__(128) attn_partial_kernel(KascadeDecodeShape s, PartialArgs a,
                                                           const __grid_constant__ TmaMaps tm) {
  using C = Cfg<D, MODE>;
  constexpr bool kGatherMode = MODE == kGather || MODE == kGatherLite;
  constexpr bool kWithV = C::kWithV;
  constexpr bool kWriteLogits = MODE == kDenseLogits || MODE == kScoresOnly || MODE == kScoresDeep;
  constexpr int ST = C::kStages;
  constexpr int KW = C::kWarpKeys;
  constexpr int NB = D / 8;   // 8-wide output column blocks
  constexpr int KC = D / 16;  // 16-wide reduction chunks

  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  T* Ks = reinterpret_cast<T*>(smem_raw) + warp * C::kWarpElems;
  T* Vs = Ks + ST * C::kStageElems;
  int* posS = reinterpret_cast<int*>(reinterpret_cast<T*>(smem_raw) + 4 * C::kWarpElems) + warp * ST * KW;
  // Bulk loader: this warp's ST stage barriers, after every warp's positions.
  uint64_t* bars = reinterpret_cast<uint64_t*>(reinterpret_cast<int*>(reinterpret_cast<T*>(smem_raw) +
                                                                       4 * C::kWarpElems) +
                                               4 * ST * KW) +
                   warp * ST;
  // TMA2D: 1024-byte aligned swizzled tiles, [warp][stage] x (K tile, V tile), then positions, barriers.
  constexpr uint32_t kTmaStage = static_cast<uint32_t>(tma_stage_bytes<T, D, MODE>());
  constexpr uint32_t kTmaTileK = KW * D * sizeof(T);
  unsigned char* tileBase = nullptr;
  if constexpr (LOAD == 2) {
    const uint32_t raw = smem_u32(smem_raw);
    unsigned char* aligned = smem_raw + ((1024u - (raw & 1023u)) & 1023u);
    tileBase = aligned + warp * ST * kTmaStage;
    posS = reinterpret_cast<int*>(aligned + 4 * ST * kTmaStage) + warp * ST * KW;
    bars = reinterpret_cast<uint64_t*>(aligned + 4 * ST * kTmaStage + 4 * ST * KW * sizeof(int)) + warp * ST;
  }
  const bool prefetch = (a.variant & KASCADE_VARIANT_PREFETCH) != 0;
  const bool p16 = (a.variant & KASCADE_VARIANT_P16) != 0;
  if constexpr (LOAD >= 1) {
    if (lane == 0)
      for (int i = 0; i < ST; ++i) mbar_init(bars + i, 1);
    mbar_fence_init();
    __syncwarp();
  }
  // The next kernel is released once this CTA's main loop is done (below): released at the start,
  // its waiting CTAs sat beside this kernel's and the 128k reuse ran 11 % slower in a graph (call A).
  if (a.variant & KASCADE_VARIANT_PDL) pdl_wait();
  bool pdlReleased = (a.variant & KASCADE_VARIANT_PDL) == 0;

  const bool lean = (a.variant & KASCADE_VARIANT_LEAN) != 0;
  const int H = s.heads, G = s.kvHeads, n = s.n;
  // KASCADE_VARIANT_BURST_WRITES: the launch set burstPeriodLog2 (and the shared memory of the stages) only with the
  // key-major f16 intermediate (or GS 1); records carry their own destinations across the lean schedule's segments.
  constexpr int kBurstU = burst_u_bytes<MODE>();
  const bool burst = kWriteLogits && a.burstPeriodLog2 > 0 && a.writeProbe == 0;
  unsigned char* burstStage =
      smem_raw + burst_stage_offset<T, D, GS, MODE, LOAD>() + warp * BurstStage<GS, kBurstU>::kWarpBytes;
  int burstCount = 0;
  const bool burstSync = a.burstSync != 0;
  bool burstPending = false;  // async stores (default): bulk copies may still read the stage
  const int listLen = kGatherMode ? a.topk : n;
  // Lean schedule: this CTA's tiles of the flattened (b, j, key tile) space, one segment per row.
  long long tile = 0, tileEnd = 0;
  if (lean) {
    tile = lean_tile_begin(blockIdx.x, a.leanWork, a.leanCtas);
    tileEnd = lean_tile_begin(static_cast<long long>(blockIdx.x) + 1, a.leanWork, a.leanCtas);
  }
  int ringBase = 0;  // this warp's ring uses so far: stages and mbarrier phases run on across segments
  do {
    // The segment: KV head j of sequence b, list entries [begin, end), partial slot `split` of the
    // row's `nslots` (classic split-KV: one segment per block, blockIdx = (split, j, b)).
    int split, j, b, begin, end, nslots = a.splits;
    bool rowLast = false;  // lean: this CTA holds the row's last tile
    if (lean) {
      const LeanSegment g =
          lean_segment(blockIdx.x, tile, tileEnd, a.leanWork, a.leanTiles, a.leanCtas, listLen);
      split = g.slot;
      nslots = g.nslots;
      rowLast = g.rowLast;
      b = static_cast<int>(g.row / G);
      j = static_cast<int>(g.row - static_cast<long long>(b) * G);
      begin = g.begin;
      end = g.end;
      tile = g.nextTile;
    } else {
      split = blockIdx.x;
      j = blockIdx.y;
      b = blockIdx.z;
      begin = split * a.chunk;
      end = min(listLen, begin + a.chunk);
    }
    if (a.clearHist && split == 0) {
      // Select state for row (b, j) of the Top-k passes that run after this kernel (replaces memsets).
      const size_t r = static_cast<size_t>(b) * G + j;
      for (int i = tid; i < kHistBins; i += C::kThreads) a.clearHist[r * kHistBins + i] = 0u;
      if (tid < kStateInts) a.clearState[r * kStateInts + tid] = 0;
    }
    const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
    const T* kg = static_cast<const T*>(a.k) + kvBase;
    const T* vg = static_cast<const T*>(a.v) + kvBase;
    const int* idx = nullptr;
    if constexpr (kGatherMode) idx = a.indices + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * a.topk;
    const size_t bh0 = static_cast<size_t>(b) * H + static_cast<size_t>(j) * GS;
    const float qscale = s.scale * kLog2e;

    // Q as the A operand: row r = lane/4 (a query head when r < GS), k = (lane%4)*2 + {0,1} (+8).
    const int row = lane >> 2, quad = lane & 3;
    uint32_t qa[KC][4];
    {
      const T* qg = static_cast<const T*>(a.q) + (bh0 + row) * D;
  #pragma unroll
      for (int kc = 0; kc < KC; ++kc) {
        qa[kc][0] = row < GS ? *reinterpret_cast<const uint32_t*>(qg + kc * 16 + quad * 2) : 0u;
        qa[kc][1] = 0u;
        qa[kc][2] = row < GS ? *reinterpret_cast<const uint32_t*>(qg + kc * 16 + 8 + quad * 2) : 0u;
        qa[kc][3] = 0u;
      }
    }

    const int groups = end > begin ? (end - begin + KW - 1) / KW : 0;
    const int steps = groups > warp ? (groups - warp + 3) / 4 : 0;

    // A gather's raw index (loaded early, checked only when its step is issued: a check at the load
    // would wait for it at once); contiguous passes: the key itself.
    auto list_pos = [&](int li) -> int {
      if (li >= end) return -1;
      if constexpr (kGatherMode) return __ldg(idx + li);
      return li;
    };
    // Positions of this lane's row (lanes 0..15) for the next PF steps: a gather reads its index
    // list PF steps ahead of the row copies, so an index load's latency is not paid per step.
    // (Session 4, call A3: reading it five steps ahead and prefetching each row into L2 four steps
    // before its copy made the 128k batch-1 reuse 4-13 % slower; three steps, no prefetch, stay.
    // Session 5: the range check moved from the load to the issue.)
    constexpr int PF = kGatherMode ? 3 : 1;
    int pq[PF];
  #pragma unroll
    for (int u = 0; u < PF; ++u) pq[u] = lane < KW && u < steps ? list_pos(begin + (warp + 4 * u) * KW + lane) : -1;
    auto issue = [&](int i) {
      if (i < steps) {
        const int st = (ringBase + i) % ST;
        const int p = (!kGatherMode || (pq[0] >= 0 && pq[0] < n)) ? pq[0] : -1;  // out of range: masked, never read
  #pragma unroll
        for (int u = 0; u + 1 < PF; ++u) pq[u] = pq[u + 1];
        pq[PF - 1] = (lane < KW && i + PF < steps) ? list_pos(begin + (warp + 4 * (i + PF)) * KW + lane) : -1;
        if (lane < KW) posS[st * KW + lane] = p;
        if constexpr (LOAD == 2) {
          // One lane: the step's 16 rows (keys begin + step * 16 ...) as D/64 swizzled boxes of K (and V);
          // rows past the split are masked by position, rows >= n arrive as zeros.
          if (lane == 0) {
            const int row0 = begin + (warp + 4 * i) * KW;
            const int bg = b * G + j;
            unsigned char* tk = tileBase + st * kTmaStage;
            mbar_arrive_expect_tx(bars + st, kTmaStage);
  #pragma unroll
            for (int c = 0; c < D / 64; ++c) {
              if (kWriteLogits && (a.variant & KASCADE_VARIANT_B1_L2_LOGITS)) {
                // Bit 8388608 (cuda-b1, b1_l2.cuh): the tiles evict-first, so the logits stay in L2.
                const uint64_t stream = l2_policy_evict_first();
                tma_load_3d_policy(smem_u32(tk + c * 2048), &tm.k, c * 64, row0, bg, smem_u32(bars + st), stream);
                if constexpr (kWithV)
                  tma_load_3d_policy(smem_u32(tk + kTmaTileK + c * 2048), &tm.v, c * 64, row0, bg, smem_u32(bars + st),
                                     stream);
                continue;
              }
              tma_load_3d(tk + c * 2048, &tm.k, c * 64, row0, bg, bars + st);
              if constexpr (kWithV) tma_load_3d(tk + kTmaTileK + c * 2048, &tm.v, c * 64, row0, bg, bars + st);
            }
          }
        } else if constexpr (LOAD == 1) {
          // Lanes 0..15 copy K row `lane`, lanes 16..31 V row `lane - 16`. A masked row (past the
          // end, or an out-of-range index) copies row 0, which is finite: its probability is 0.
          const int r = lane & (KW - 1);
          const int pr = __shfl_sync(0xffffffffu, p, r);
          const size_t off = static_cast<size_t>(pr < 0 ? 0 : pr) * D;
          constexpr unsigned kRowBytes = D * sizeof(T);
          if (lane == 0) mbar_arrive_expect_tx(bars + st, KW * kRowBytes * (kWithV ? 2 : 1));
          if (lane < KW) {
            bulk_g2s(Ks + st * C::kStageElems + r * C::kRow, kg + off, kRowBytes, bars + st);
          } else if constexpr (kWithV) {
            bulk_g2s(Vs + st * C::kStageElems + r * C::kRow, vg + off, kRowBytes, bars + st);
          }
        } else if constexpr (MODE == kGatherLite) {
          // Bit 8192: lane pair (2r, 2r + 1) copies row r, lane 2r + h its 16-byte chunks 2u + h (one
          // 32-byte sector per row per instruction, as below), from one shuffled position and two
          // base pointers per lane: a few instructions instead of a shuffle and address per chunk
          // (call A: the gather issues ~660 instructions per warp step at ~6 cycles each).
          const int r = lane >> 1, h = lane & 1;
          const int pr = __shfl_sync(0xffffffffu, p, r);
          const int bytes = pr < 0 ? 0 : 16;
          const size_t off = static_cast<size_t>(pr < 0 ? 0 : pr) * D + h * 8;
          T* kd = Ks + st * C::kStageElems + r * C::kRow + h * 8;
          T* vd = Vs + st * C::kStageElems + r * C::kRow + h * 8;
  #pragma unroll
          for (int u = 0; u < C::kChunksPerRow / 2; ++u) {
            if (prefetch) {
              cp_async16_pf(kd + 16 * u, kg + off + 16 * u, bytes);
              cp_async16_pf(vd + 16 * u, vg + off + 16 * u, bytes);
            } else {
              cp_async16(kd + 16 * u, kg + off + 16 * u, bytes);
              cp_async16(vd + 16 * u, vg + off + 16 * u, bytes);
            }
          }
        } else {
  #pragma unroll
          for (int c = lane; c < KW * C::kChunksPerRow; c += 32) {
            const int r = c / C::kChunksPerRow, col = (c % C::kChunksPerRow) * 8;
            const int pr = __shfl_sync(0xffffffffu, p, r);
            const size_t off = static_cast<size_t>(pr < 0 ? 0 : pr) * D + col;
            if (prefetch) {
              cp_async16_pf(Ks + st * C::kStageElems + r * C::kRow + col, kg + off, pr < 0 ? 0 : 16);
              if constexpr (kWithV)
                cp_async16_pf(Vs + st * C::kStageElems + r * C::kRow + col, vg + off, pr < 0 ? 0 : 16);
            } else {
              cp_async16(Ks + st * C::kStageElems + r * C::kRow + col, kg + off, pr < 0 ? 0 : 16);
              if constexpr (kWithV)
                cp_async16(Vs + st * C::kStageElems + r * C::kRow + col, vg + off, pr < 0 ? 0 : 16);
            }
          }
        }
      }
      if constexpr (LOAD == 0) cp_async_commit();
    };

    float m = -INFINITY, l = 0.f;
    float acc[NB][2];
  #pragma unroll
    for (int nb = 0; nb < NB; ++nb) acc[nb][0] = acc[nb][1] = 0.f;

  #pragma unroll
    for (int i = 0; i < ST - 1; ++i) issue(i);
    for (int i = 0; i < steps; ++i) {
      issue(i + ST - 1);
      const int st = (ringBase + i) % ST;
      if constexpr (LOAD >= 1) {
        mbar_wait(bars + st, static_cast<unsigned>((ringBase + i) / ST) & 1u);
      } else {
        cp_async_wait<ST - 1>();
      }
      __syncwarp();
      const T* ks = Ks + st * C::kStageElems;

      // S = Q K^T for 16 keys: two 8-key column blocks.
      float sc[2][4];
      {
        const int mi = lane >> 3, r8 = lane & 7;
        const T* base = ks + ((mi >> 1) * 8 + r8) * C::kRow + (mi & 1) * 8;
        qk16<T, KC>(
            qa,
            [&](int kc, uint32_t* bf) {
              if constexpr (LOAD == 2) {
                ldmatrix_x4(bf, tileBase + st * kTmaStage + tma_tile_offset((mi >> 1) * 8 + r8, kc * 2 + (mi & 1)));
              } else {
                ldmatrix_x4(bf, base + kc * 16);
              }
            },
            sc);
      }
      // This thread's scores: row `row`, keys nb*8 + quad*2 + e.
      float sv[4];
      int pv[4];
  #pragma unroll
      for (int nb = 0; nb < 2; ++nb)
  #pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = nb * 8 + quad * 2 + e;
          const int p = posS[st * KW + key];
          pv[nb * 2 + e] = p;
          sv[nb * 2 + e] = p >= 0 ? sc[nb][e] * qscale : -INFINITY;
        }
      float tm = fmaxf(fmaxf(sv[0], sv[1]), fmaxf(sv[2], sv[3]));
      tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 1));
      tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 2));
      float pr[4], al;
      softmax16(sv, tm, m, l, pr, al);
      if constexpr (kWriteLogits) {
        // a.writeProbe (diagnosis only, env KASCADE_DEBUG_NO_LOGIT_WRITES; 0 in every op a user runs): 1 no
        // intermediate at all, 2 u computed but not stored, 3 u stored but not m16, 6 (session 8) only the CTAs of
        // sequences b < batch / 2 store (half the bytes, in the pass's first half), 7 (session 8) only the even splits
        // store (half the bytes, all along the pass). (Session 7, call A: one 8-byte store per lane, or u from the
        // softmax's probabilities, gained nothing and were removed; session 8: stores under the default L2 policy (4)
        // and stores folded into a few MB (5) changed nothing, removed; see packages/cuda/README.md.)
        const int probe = a.writeProbe;
        if ((a.variant & KASCADE_VARIANT_U16) && probe != 1) {
          // u = 2^15 exp2(l - m16) as f16 pairs (positions 16 t + nb * 8 + quad * 2 + {0, 1}: even, so 4-byte
          // aligned in the 16-aligned rows), and m16 = tm, the row's max over the step's 16 keys. The 2^15
          // scale keeps u in f16's normal range down to 2^-29 (select_plan.h, kU16ScaleLog2).
          unsigned h2[2];
  #pragma unroll
          for (int nb = 0; nb < 2; ++nb) {
            const __half2 h = __floats2half2_rn(exp2f(sv[nb * 2] - tm + kU16ScaleLog2),
                                                exp2f(sv[nb * 2 + 1] - tm + kU16ScaleLog2));
            h2[nb] = *reinterpret_cast<const unsigned*>(&h);
          }
          // Bit 1048576 (GS > 1; at GS 1 both orders are the same): key-major order (select_plan.h, u16_index): lanes
          // of rows r and r ^ 1 (lane ^ 4: the same keys) swap halves, so that the even row holds key p0's pair of
          // heads (r & ~1, r | 1) and the odd row key p1's: each lane stores one 4-byte pair, the warp the step's
          // GS x 32 bytes in one piece.
          const int layout = u16_layout_of(a.variant, GS);
          const bool keyMajor = layout != kU16HeadMajor;
          if (keyMajor) {
  #pragma unroll
            for (int nb = 0; nb < 2; ++nb) {
              const unsigned o = __shfl_xor_sync(0xffffffffu, h2[nb], 4);
              h2[nb] = (row & 1) ? __byte_perm(o, h2[nb], 0x7632) : __byte_perm(h2[nb], o, 0x5410);
            }
          }
          const int nU = u16_stride(n);
          __half* ur = reinterpret_cast<__half*>(a.logits);
          if (burst) {
            // The step's record to this warp's stage; stored inside the next write window (burst_writes.cuh).
            const unsigned long long gstep =
                u16_burst_step(static_cast<size_t>(b) * G + j, begin + (warp + 4 * i) * KW, nU);
            if (burstPending) {
              burst_stage_ready();
              burstPending = false;
            }
            burst_record<GS, kBurstU>(burstStage, burstCount, row, quad, h2, tm, gstep);
            burstCount = burst_after_step<GS, kBurstU>(burstStage, burstCount + 1, ur,
                                                       u16_m16(a.logits, static_cast<size_t>(s.batch) * H, n),
                                                       a.burstPeriodLog2, a.burstWindowLog2, a.burstGroupsLog2, burstSync,
                                                       &burstPending);
          }
          // Streaming stores (evict-first in L2): the select reads them once, after this pass.
          const bool storeOn = probe == 6 ? 2 * b < s.batch : (probe == 7 ? (split & 1) == 0 : true);
          auto store_pair = [&](size_t ui, unsigned w) { __stcs(reinterpret_cast<unsigned*>(ur + ui), w); };
          if (row < GS && probe != 2 && storeOn && !burst) {
  #pragma unroll
            for (int nb = 0; nb < 2; ++nb) {
              const int p0 = pv[nb * 2], p1 = pv[nb * 2 + 1];
              if (keyMajor) {
                const int pk = (row & 1) ? p1 : p0;
                if (pk >= 0) store_pair(u16_index(bh0, row & ~1, pk, nU, GS, layout), h2[nb]);
              } else if (p0 >= 0 && p1 >= 0) {
                store_pair(u16_index(bh0, row, p0, nU, GS, false), h2[nb]);
              } else if (p0 >= 0) {
                ur[u16_index(bh0, row, p0, nU, GS, false)] = __ushort_as_half(static_cast<unsigned short>(h2[nb] & 0xffffu));
              }
            }
          } else if (probe == 2) {
            asm volatile("" ::"r"(h2[0]), "r"(h2[1]));  // u's work kept, nothing stored
          }
          if (row < GS && quad == 0 && pv[0] >= 0 && probe != 2 && probe != 3 && storeOn && !burst) {
            __stcs(u16_m16(a.logits, static_cast<size_t>(s.batch) * H, n) + u16_m16_index(bh0, row, pv[0], nU, GS, layout),
                   tm);
          }
        } else if (row < GS && probe != 1) {
          float* lg = a.logits + (bh0 + row) * static_cast<size_t>(n);
  #pragma unroll
          for (int t = 0; t < 4; ++t)
            if (pv[t] >= 0) {
              // Bit 8388608 (cuda-b1, b1_l2.cuh): evict-last, read back from L2 and dropped by their last reader.
              if (a.variant & KASCADE_VARIANT_B1_L2_LOGITS)
                st_global_l2_policy(lg + pv[t], sv[t], l2_policy_evict_last());
              else
                lg[pv[t]] = sv[t];
            }
        }
      }
      if constexpr (kWithV) {
        // O = al O + P V over the D/16 column chunks (P as hi + lo halves, or hi alone with bit 32).
        const T* vs = Vs + st * C::kStageElems;
        const int mi = lane >> 3, r8 = lane & 7;
        const T* base = vs + ((mi & 1) * 8 + r8) * C::kRow + (mi >> 1) * 8;
        pv16<T, KC>(
            pr, al, p16,
            [&](int nd, uint32_t* bf) {
              if constexpr (LOAD == 2) {
                ldmatrix_x4_trans(bf, tileBase + st * kTmaStage + kTmaTileK +
                                          tma_tile_offset((mi & 1) * 8 + r8, nd * 2 + (mi >> 1)));
              } else {
                ldmatrix_x4_trans(bf, base + nd * 16);
              }
            },
            acc);
      }
      __syncwarp();
    }
    if constexpr (LOAD == 0) cp_async_wait<0>();
    if (!pdlReleased) {
      pdl_release();
      pdlReleased = true;
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    __syncthreads();

    // Merge the 4 warps (red_o [4][GS][D], red_ml [4][GS][2]) into this segment's partial slot.
    float* red_o = reinterpret_cast<float*>(smem_raw);
    merge_warps<D, GS, 4, C::kThreads, kWithV>(
        red_o, red_o + 4 * GS * D, m, l, acc,
        [&](int h, float M, float L) {
          float* ml = a.part_ml + ((bh0 + h) * a.splits + split) * 2;
          ml[0] = M;
          ml[1] = L;
        },
        [&](int i2, float o) { a.part_o[((bh0 + i2 / D) * a.splits + split) * D + i2 % D] = o; });
    if (lean && rowLast) {
      // The row's slots past its last CTA's stay empty (m = -inf, l = 0) for whoever reads all `splits`.
      const int pad = a.splits - nslots;
      for (int i2 = tid; i2 < GS * pad; i2 += C::kThreads) {
        float* ml = a.part_ml + ((bh0 + i2 / pad) * a.splits + nslots + i2 % pad) * 2;
        ml[0] = -INFINITY;
        ml[1] = 0.f;
      }
    }
    if constexpr (kWithV) {
      if (a.variant & KASCADE_VARIANT_FUSED) {
        // The last block of this (sequence, KV head) to finish merges every split's partials (lean:
        // the row's nslots CTAs count, each once). Bit 8192: sixteen slots' loads in flight, else eight.
        merge_row_if_last<T, D, GS, C::kThreads>(g_split_done + (static_cast<size_t>(b) * G + j), nslots, a.splits,
                                                 a.part_o, a.part_ml, bh0, static_cast<T*>(a.out),
                                                 reinterpret_cast<float*>(smem_raw),
                                                 (a.variant & KASCADE_VARIANT_GATHER_B1) != 0);
      }
    }
    ringBase += steps;
    __syncthreads();  // the next segment's loads reuse the shared memory the merges read
  } while (lean && tile < tileEnd);
  if (burst) {
    if (burstPending) burst_stage_ready();
    burst_drain<GS, kBurstU>(burstStage, burstCount, reinterpret_cast<__half*>(a.logits),
                             u16_m16(a.logits, static_cast<size_t>(s.batch) * H, n), a.burstPeriodLog2,
                             a.burstWindowLog2, a.burstGroupsLog2, a.burstDrainNow != 0, burstSync);
  }
}

template <typename T, int D>
__global__ void combine_kernel(int splits, const float* __restrict__ part_o,
                               const float* __restrict__ part_ml, T* __restrict__ out, int pdl) {
  if (pdl) pdl_wait_and_release();
  extern __shared__ float wts[];  // [splits] weights exp2(m_s - M)
  __shared__ float red[D / 32];
  __shared__ float ML[2];
  const size_t bh = blockIdx.x;
  const int d = threadIdx.x, lane = d & 31, warp = d >> 5;
  const float* ml = part_ml + bh * splits * 2;
  float M = -INFINITY;
  for (int s = d; s < splits; s += D) M = fmaxf(M, ml[2 * s]);
  M = warp_max(M);
  if (lane == 0) red[warp] = M;
  __syncthreads();
  if (d == 0) {
    float x = red[0];
    for (int w = 1; w < D / 32; ++w) x = fmaxf(x, red[w]);
    ML[0] = x;
  }
  __syncthreads();
  M = ML[0];
  float L = 0.f;
  for (int s = d; s < splits; s += D) {
    const float m = ml[2 * s];
    const float w = m == -INFINITY ? 0.f : exp2f(m - M);
    wts[s] = w;
    L += w * ml[2 * s + 1];
  }
  L = warp_sum(L);
  __syncthreads();
  if (lane == 0) red[warp] = L;
  __syncthreads();
  if (d == 0) {
    float x = 0.f;
    for (int w = 0; w < D / 32; ++w) x += red[w];
    ML[1] = x;
  }
  __syncthreads();
  const float* po = part_o + bh * splits * D + d;
  float o0 = 0.f, o1 = 0.f, o2 = 0.f, o3 = 0.f;
  int s = 0;
  for (; s + 4 <= splits; s += 4) {
    o0 = fmaf(po[(s + 0) * D], wts[s + 0], o0);
    o1 = fmaf(po[(s + 1) * D], wts[s + 1], o1);
    o2 = fmaf(po[(s + 2) * D], wts[s + 2], o2);
    o3 = fmaf(po[(s + 3) * D], wts[s + 3], o3);
  }
  for (; s < splits; ++s) o0 = fmaf(po[s * D], wts[s], o0);
  out[bh * D + d] = from_float<T>((o0 + o1 + o2 + o3) / ML[1]);
}

// KASCADE_VARIANT_LEAN's combine: grid (batch x heads, DS), block 128 threads; block (bh, y) merges
// the row's S slots for the head-dim slice [y DW, (y + 1) DW), DW = D / DS (DS from the grid: enough
// blocks to fill the GPU when batch x heads is small). The 128 threads read the slots' (m, l) once
// (weights exp2(m_s - M) to shared memory), then DW / 4 lanes take one float4 column chunk each and
// the 128 / (DW / 4) lane groups stride over the slots (empty slots, weight 0, are skipped), so each
// thread has few, independent 16-byte loads in flight; the groups meet in shared memory.
template <typename T, int D>
__global__ void __launch_bounds__(128) lean_combine_kernel(int splits, const float* __restrict__ part_o,
                                                           const float* __restrict__ part_ml, T* __restrict__ out,
                                                           int pdl) {
  if (pdl) pdl_wait_and_release();
  extern __shared__ float wts[];  // [splits] weights, then [groups][DW] partial sums
  __shared__ float red[4];
  __shared__ float ML[2];
  const size_t bh = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int DW = D / gridDim.y, chunks = DW / 4, groups = 128 / chunks;
  const float* ml = part_ml + bh * splits * 2;
  float M = -INFINITY;
  for (int x = tid; x < splits; x += 128) M = fmaxf(M, __ldcg(ml + 2 * x));
  M = warp_max(M);
  if (lane == 0) red[warp] = M;
  __syncthreads();
  if (tid == 0) ML[0] = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
  __syncthreads();
  M = ML[0];
  float L = 0.f;
  for (int x = tid; x < splits; x += 128) {
    const float m = __ldcg(ml + 2 * x);
    const float w = m == -INFINITY ? 0.f : exp2f(m - M);
    wts[x] = w;
    if (w != 0.f) L += w * __ldcg(ml + 2 * x + 1);
  }
  L = warp_sum(L);
  __syncthreads();  // red[] reads of the max are done
  if (lane == 0) red[warp] = L;
  __syncthreads();
  if (tid == 0) ML[1] = red[0] + red[1] + red[2] + red[3];
  const int c = tid % chunks, g = tid / chunks;
  const int d0 = blockIdx.y * DW + 4 * c;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (g < groups) {
    const float* po = part_o + bh * splits * D + d0;
    for (int x = g; x < splits; x += groups) {
      const float w = wts[x];
      if (w == 0.f) continue;
      const float4 o = __ldcg(reinterpret_cast<const float4*>(po + static_cast<size_t>(x) * D));
      acc.x = fmaf(o.x, w, acc.x);
      acc.y = fmaf(o.y, w, acc.y);
      acc.z = fmaf(o.z, w, acc.z);
      acc.w = fmaf(o.w, w, acc.w);
    }
  }
  float* part = wts + ((splits + 3) & ~3);  // 16-byte aligned for the float4 stores
  if (g < groups) reinterpret_cast<float4*>(part + g * DW)[c] = acc;
  __syncthreads();
  if (tid < DW) {
    float o = 0.f;
    for (int x = 0; x < groups; ++x) o += part[x * DW + tid];
    out[bh * D + blockIdx.y * DW + tid] = from_float<T>(o / ML[1]);
  }
}

int device_sm_count() {
  static int cached = -1;
  if (cached < 0) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 132;
    }
    cached = sms;
  }
  return cached;
}

// Split-KV factor, from sweeps on the H200 (bench rows dense-splits-*, reuse-splits-*). Batch 1,
// 128k keys, 8 KV heads: 64 splits 146 us, 33 splits 170 us, 128 splits 158-172 us, 192+ 160 us;
// reuse over 13107 keys: 26 splits 25 us, 52+ 28-29 us. Batch 32, 128k: 32-33 splits beat 5-16
// by 1-3 %. So: at least ceil(L / 4096) splits, and up to about two waves of blocks as long as
// each split keeps >= 1024 keys (512 for gathered lists).
int attn_splits(const KascadeDecodeShape& s, int listLen, int* chunk, bool gather) {
  if (listLen <= 0) {
    *chunk = kTile;
    return 1;
  }
  const int bg = s.batch * s.kvHeads;
  const int slots = 2 * device_sm_count();  // two 128-thread blocks fit per SM (shared memory)
  int S;
  if (s.splits > 0) {
    S = s.splits;
  } else {
    const int minKeys = gather ? 512 : 1024;
    S = max(ceil_div(listLen, 4096), min(ceil_div(2 * slots, bg), ceil_div(listLen, minKeys)));
  }
  S = max(1, min(S, ceil_div(listLen, kMinKeysPerSplit)));
  const int c = ceil_div(ceil_div(listLen, S), kTile) * kTile;  // whole 16-key steps for all 4 warps
  *chunk = c;
  return ceil_div(listLen, c);
}

// KASCADE_VARIANT_GATHER_B1's split count: the list cut into whole tiles so that the rows' splits
// fill the perSm x SMs CTAs that fit at once (at most kLeanMaxCtasPerSm per SM, which the workspace
// is sized for); writes the entries per split to *chunk.
int lite_splits(const KascadeDecodeShape& s, int listLen, int perSm, int* chunk) {
  const int per = perSm < 1 ? 1 : (perSm > kLeanMaxCtasPerSm ? kLeanMaxCtasPerSm : perSm);
  return lite_split_count(static_cast<long long>(s.batch) * s.kvHeads, listLen,
                          static_cast<long long>(per) * device_sm_count(), chunk);
}

// Lean grid: the CTAs that fit at once (perSm x SMs, at most kLeanMaxCtasPerSm per SM), or the
// forced `splits` as the CTA count (tuning), within the same cap. Gathers with long shares (at
// least 32 tiles per CTA in one wave) take two waves (within the cap): at 128k batch 32 the reuse
// pass ran 2.3 % faster on 528 CTAs than on 264 (H200, bench rows reuse-lean-ctas-*, 6cb49d3). Short
// shares stay in one wave: at 128k batch 1 (6 tiles per CTA) two waves took the reuse pass from
// ~21 to ~35 us (ncu, 29720db): each wave pays the pipeline fill, and twice the slots per row.
int lean_ctas(const KascadeDecodeShape& s, int perSm, bool gather, long long work) {
  const int cap = kLeanMaxCtasPerSm * device_sm_count();
  const bool twoWaves = gather && work >= 32LL * perSm * device_sm_count();
  const int per = min(perSm * (twoWaves ? 2 : 1), kLeanMaxCtasPerSm);
  const int want = s.splits > 0 ? s.splits : per * device_sm_count();
  return max(1, min(want, cap));
}

template <typename T, int D, int GS, int MODE, int LOAD>
static cudaError_t launch_partial_t(const KascadeDecodeShape& s, PartialArgs& a, const TmaMaps& tm,
                                    cudaStream_t st) {
  constexpr size_t smemBase = partial_smem_bytes<T, D, GS, MODE, LOAD>();
  // KASCADE_VARIANT_BURST_WRITES: the warps' write stages past the pass's own shared memory.
  constexpr size_t smemStaged = burst_stage_offset<T, D, GS, MODE, LOAD>() + burst_stage_bytes<GS, MODE>();
  constexpr size_t smemBurst = smemStaged > smemBase ? smemStaged : smemBase;
  static int perSm = 0;       // CTAs of this kernel resident per SM (without the stages), queried once
  static int perSmBurst = 0;  // ... and with them
  if (perSm == 0) {
    cudaError_t e = cudaFuncSetAttribute(attn_partial_kernel<T, D, GS, MODE, LOAD>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smemBurst));
    if (e != cudaSuccess) return e;
    int nb = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, attn_partial_kernel<T, D, GS, MODE, LOAD>,
                                                      Cfg<D, MODE>::kThreads, smemBase);
    if (e != cudaSuccess) return e;
    int nbBurst = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nbBurst, attn_partial_kernel<T, D, GS, MODE, LOAD>,
                                                      Cfg<D, MODE>::kThreads, smemBurst);
    if (e != cudaSuccess) return e;
    perSm = nb < 1 ? 1 : nb;
    perSmBurst = nbBurst;
  }
  // Stages that would cost a CTA per SM (another device, another shape) are not worth it: direct stores then.
  if (perSmBurst < perSm) a.burstPeriodLog2 = 0;
  const size_t smem = a.burstPeriodLog2 > 0 ? smemBurst : smemBase;
  dim3 grid(a.splits, s.kvHeads, s.batch);
  if (a.variant & KASCADE_VARIANT_LEAN) {
    const long long rows = static_cast<long long>(s.batch) * s.kvHeads;
    constexpr bool kGatherMode = MODE == kGather || MODE == kGatherLite;
    const int listLen = kGatherMode ? a.topk : s.n;
    const long long work = rows * ((listLen + kTile - 1) / kTile);
    const LeanPlan p = lean_plan(rows, listLen, lean_ctas(s, perSm, kGatherMode, work));
    a.leanWork = p.work;
    a.leanTiles = p.tiles;
    a.leanCtas = p.ctas;
    a.splits = p.slots;
    grid = dim3(p.ctas, 1, 1);
  }
  if constexpr (MODE == kGatherLite) {
    // KASCADE_VARIANT_GATHER_B1 (split schedule only; launch_partial_mode picks this instantiation).
    // Call A (H200, 128k batch 1) showed the gather issue-bound at ~6 warps per SM (ncu: 1.6 warps
    // per scheduler, 0.27 issued per cycle, ~2 us per 16-key step): the 2-stage ring fits perSm CTAs
    // (3 at d 128), and each row's list is cut into the splits that fill them (lite_splits); a forced
    // `splits` is taken as it is.
    if (s.splits == 0) {
      a.splits = lite_splits(s, a.topk, perSm, &a.chunk);
      grid = dim3(a.splits, s.kvHeads, s.batch);
    }
  }
  return launch_maybe_pdl((a.variant & KASCADE_VARIANT_PDL) != 0, attn_partial_kernel<T, D, GS, MODE, LOAD>,
                          grid, dim3(Cfg<D, MODE>::kThreads), smem, st, s, a, tm);
}

template <typename T, int D, int GS, int LOAD>
static cudaError_t launch_partial_mode(const KascadeDecodeShape& s, AttnMode mode, PartialArgs& a,
                                       const TmaMaps& tm, cudaStream_t st) {
  if constexpr (LOAD == 2) {  // contiguous passes only
    switch (mode) {
      case kDense: return launch_partial_t<T, D, GS, kDense, 2>(s, a, tm, st);
      case kDenseLogits: return launch_partial_t<T, D, GS, kDenseLogits, 2>(s, a, tm, st);
      case kScoresOnly:
        // KASCADE_VARIANT_DEEP_SCORES: the 6-stage instantiation (two CTAs per SM).
        if (a.variant & KASCADE_VARIANT_DEEP_SCORES) return launch_partial_t<T, D, GS, kScoresDeep, 2>(s, a, tm, st);
        return launch_partial_t<T, D, GS, kScoresOnly, 2>(s, a, tm, st);
      default: return cudaErrorInvalidValue;
    }
  } else {
    switch (mode) {
      case kDense: return launch_partial_t<T, D, GS, kDense, LOAD>(s, a, tm, st);
      case kDenseLogits: return launch_partial_t<T, D, GS, kDenseLogits, LOAD>(s, a, tm, st);
      case kScoresOnly: return launch_partial_t<T, D, GS, kScoresOnly, LOAD>(s, a, tm, st);
      case kGather:
        // KASCADE_VARIANT_GATHER_B1 on the split schedule: the 2-stage instantiation.
        if ((a.variant & KASCADE_VARIANT_GATHER_B1) && !(a.variant & KASCADE_VARIANT_LEAN))
          return launch_partial_t<T, D, GS, kGatherLite, LOAD>(s, a, tm, st);
        return launch_partial_t<T, D, GS, kGather, LOAD>(s, a, tm, st);
    }
  }
  return cudaErrorInvalidValue;
}

// cuTensorMapEncodeTiled from the driver, fetched once at run time (no link-time libcuda dependency).
static PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static bool tried = false;
  if (!tried) {
    tried = true;
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    else
      cudaGetLastError();
  }
  return fn;
}

// 3D map over a K or V cache: dims (headDim, n, batch x kvHeads), strides (row, capacity rows);
// boxes of 64 elements x 16 rows, 128-byte swizzle, rows past n zero-filled. L2 promotion: 256 B,
// except under the lean schedule (bit 128), which asks for no promotion: each box row is a whole
// 128-byte line, and with 256-byte promotion the second box of a row (its other half) hits the line
// the first one promoted: 25-29 % L2 hits on a pure stream (34 % with 16-byte copies, whose pass ran
// at 97 % of L2 throughput), where cuDNN's kernel shows 0.3 % (ncu, 2026-11-29). An experiment: the
// bench compares lean and non-lean TMA variants.
static bool encode_kv_map(CUtensorMap* m, const KascadeDecodeShape& s, const void* base) {
  const auto enc = tensor_map_encoder();
  if (!enc) return false;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(s.headDim), static_cast<cuuint64_t>(s.n),
                              static_cast<cuuint64_t>(s.batch) * s.kvHeads};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(s.headDim) * 2,
                                 static_cast<cuuint64_t>(s.capacity) * s.headDim * 2};
  const cuuint32_t box[3] = {64, static_cast<cuuint32_t>(kTile / 4), 1};
  const cuuint32_t estr[3] = {1, 1, 1};
  const CUtensorMapDataType dt =
      s.dtype == KASCADE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUtensorMapL2promotion promo = (s.variant & (KASCADE_VARIANT_LEAN | KASCADE_VARIANT_NO_L2_PROMO))
                                           ? CU_TENSOR_MAP_L2_PROMOTION_NONE
                                           : CU_TENSOR_MAP_L2_PROMOTION_L2_256B;
  return enc(m, dt, 3, const_cast<void*>(base), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
             CU_TENSOR_MAP_SWIZZLE_128B, promo, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

cudaError_t launch_partial(const KascadeDecodeShape& s, AttnMode mode, PartialArgs& a, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  TmaMaps tm{};
  // TMA2D on the contiguous passes; a map the driver cannot encode is an error, never a silent fallback.
  const bool tma2d = (a.variant & KASCADE_VARIANT_TMA2D) && mode != kGather;
  if (tma2d && !(encode_kv_map(&tm.k, s, a.k) && encode_kv_map(&tm.v, s, mode == kScoresOnly ? a.k : a.v)))
    return cudaErrorNotSupported;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        if (tma2d) return launch_partial_mode<T, D, GS, 2>(s, mode, a, tm, st);
        if (a.variant & KASCADE_VARIANT_BULK) return launch_partial_mode<T, D, GS, 1>(s, mode, a, tm, st);
        return launch_partial_mode<T, D, GS, 0>(s, mode, a, tm, st);
      });
    });
  });
}

bool fused_combine_fits(const KascadeDecodeShape& s, int splits) {
  const int g = s.heads / s.kvHeads;
  // Weights [g][splits] f32 in the ring region (the smallest ring: 2-byte rows, head dim 64, with V).
  const size_t need = sizeof(float) * static_cast<size_t>(g) * splits;
  return static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows && need <= ring_bytes<__half, 64, kDense>();
}

cudaError_t launch_attention(const KascadeDecodeShape& s, AttnMode mode, PartialArgs& a, void* out,
                             cudaStream_t st) {
  a.variant = s.variant;
  a.out = out;
  if (mode == kGather && (s.variant & KASCADE_VARIANT_GATHER_WS)) return launch_gather_ws(s, a, out, st);
  const bool lean = (s.variant & KASCADE_VARIANT_LEAN) != 0;
  // Lean: at most kLeanMaxCtasPerSm x SMs slots per row, always within the fused merge's weights.
  const bool fused = (s.variant & KASCADE_VARIANT_FUSED) && mode != kScoresOnly &&
                     fused_combine_fits(s, lean ? kLeanMaxCtasPerSm * device_sm_count() : a.splits);
  if (!fused) a.variant &= ~KASCADE_VARIANT_FUSED;
  const cudaError_t e = launch_partial(s, mode, a, st);
  if (e != cudaSuccess || fused || mode == kScoresOnly) return e;
  if (lean) return launch_lean_combine(s, a.splits, a.part_o, a.part_ml, out, st);
  return launch_combine(s, a.splits, a.part_o, a.part_ml, out, st);
}

cudaError_t launch_lean_combine(const KascadeDecodeShape& s, int splits, const float* part_o,
                                const float* part_ml, void* out, cudaStream_t st) {
  const int bh = s.batch * s.heads;
  // Head-dim slices: double them (down to 16 columns) while the grid is under two blocks per SM.
  int ds = 1;
  while (static_cast<long long>(bh) * ds < 2LL * device_sm_count() && s.headDim / (2 * ds) >= 16) ds *= 2;
  // Weights (rounded up to 4 floats) + the groups' partial sums, [groups][DW] = 512 floats.
  const size_t smem = sizeof(float) * (((static_cast<size_t>(splits) + 3) & ~static_cast<size_t>(3)) + 128 * 4);
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      const bool pdl = (s.variant & KASCADE_VARIANT_PDL) != 0;
      return launch_maybe_pdl(pdl, lean_combine_kernel<T, D>, dim3(bh, ds), dim3(128), smem, st, splits, part_o,
                              part_ml, static_cast<T*>(out), pdl ? 1 : 0);
    });
  });
}

cudaError_t launch_combine(const KascadeDecodeShape& s, int splits, const float* part_o,
                           const float* part_ml, void* out, cudaStream_t st) {
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      const bool pdl = (s.variant & KASCADE_VARIANT_PDL) != 0;
      return launch_maybe_pdl(pdl, combine_kernel<T, D>, dim3(s.batch * s.heads), dim3(D), sizeof(float) * splits, st,
                              splits, part_o, part_ml, static_cast<T*>(out), pdl ? 1 : 0);
    });
  });
}

static size_t align256(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

Workspace workspace_layout(const KascadeDecodeShape& s, int topk, void* base, bool select) {
  int c;
  int S = attn_splits(s, s.n, &c, false);
  if (topk > 0) S = max(S, attn_splits(s, topk, &c, true));
  if ((s.variant & KASCADE_VARIANT_GATHER_B1) && topk > 0) {
    int c;  // lite_splits at the largest CTA count per SM
    S = max(S, lite_splits(s, topk, kLeanMaxCtasPerSm, &c));
  }
  if ((s.variant & KASCADE_VARIANT_GATHER_WS) && topk > 0) {
    int c;  // ws_splits at the largest CTA count per SM
    S = max(S, ws_splits(s, topk, kLeanMaxCtasPerSm, &c));
  }
  if (s.variant & KASCADE_VARIANT_LEAN) {
    // Slots per row grow with the CTA count: size them for the largest lean grid.
    const long long rows = static_cast<long long>(s.batch) * s.kvHeads;
    const int P = kLeanMaxCtasPerSm * device_sm_count();
    S = max(S, lean_plan(rows, s.n, P).slots);
    if (topk > 0) S = max(S, lean_plan(rows, topk, P).slots);
  }
  const size_t BH = static_cast<size_t>(s.batch) * s.heads, BG = static_cast<size_t>(s.batch) * s.kvHeads;
  const size_t n = static_cast<size_t>(s.n);
  size_t sizes[6] = {BH * S * s.headDim * 4, BH * S * 2 * 4, select ? BH * n * 4 : 0, select ? BG * n * 4 : 0, BG * kHistBins * 4, BG * 8 * 4};
  // KASCADE_VARIANT_U16 (the anchors run it with STREAM_SELECT): the f16 intermediate and its step maxima
  // (larger than f32 logits only for tiny n). STREAM_SELECT: pooled rows padded to 16, 12-bit histogram rows.
  if (select && (s.variant & (KASCADE_VARIANT_U16 | KASCADE_VARIANT_STREAM_SELECT)))
    sizes[2] = max(sizes[2], u16_bytes(BH, s.n));
  // KASCADE_VARIANT_SELECT_B1 (select_b1_decode.cu): its candidate list after the logits, which stay intact for
  // the anchor's sparse pass.
  if (select && (s.variant & KASCADE_VARIANT_SELECT_B1) && !(s.variant & KASCADE_VARIANT_U16)) sizes[2] += BG * n * 4;
  if (select && (s.variant & KASCADE_VARIANT_STREAM_SELECT)) {
    sizes[2] = max(sizes[2], 2 * BG * n * 4);  // the select's list: keys and scores per row
    // KASCADE_VARIANT_SPARSE_U16 (with 1024): the list after the intermediate, which the sparse pass reads.
    if ((s.variant & KASCADE_VARIANT_SPARSE_U16) && (s.variant & KASCADE_VARIANT_U16))
      sizes[2] = u16_list_offset(BH, s.n) + 2 * BG * n * 4;
    sizes[3] = BG * static_cast<size_t>(u16_stride(s.n)) * 4;
    sizes[4] = max(sizes[4], BG * kStreamBins * 4);
  }
  Workspace w{};
  size_t off = 0;
  char* p = static_cast<char*>(base);
  void** slots[6] = {reinterpret_cast<void**>(&w.part_o), reinterpret_cast<void**>(&w.part_ml),
                     reinterpret_cast<void**>(&w.logits), reinterpret_cast<void**>(&w.pooled),
                     reinterpret_cast<void**>(&w.hist), reinterpret_cast<void**>(&w.state)};
  for (int i = 0; i < 6; ++i) {
    *slots[i] = p ? p + off : nullptr;
    off += align256(sizes[i]);
  }
  w.bytes = off;
  return w;
}

}  // namespace kascade

using namespace kascade;

extern "C" size_t kascade_decode_workspace_bytes(const KascadeDecodeShape* s, int topk) {
  return topk > 0 ? anchor_workspace_bytes(*s, topk) : workspace_layout(*s, 0, nullptr, false).bytes;
}

extern "C" size_t kascade_reuse_workspace_bytes(const KascadeDecodeShape* s, int topk) {
  return workspace_layout(*s, topk, nullptr, false).bytes;
}

extern "C" cudaError_t kascade_check_shape(const KascadeDecodeShape* s, char* why) {
  auto fail = [&](const char* msg) {
    if (why) snprintf(why, 256, "%s", msg);
    return cudaErrorInvalidValue;
  };
  if (s->batch < 1 || s->batch > 65535) return fail("batch must be in 1..65535");
  if (s->kvHeads < 1 || s->kvHeads > kMaxKvHeads) return fail("kvHeads must be in 1..64");
  if (s->heads % s->kvHeads != 0) return fail("heads must be a multiple of kvHeads");
  const int g = s->heads / s->kvHeads;
  if (g != 1 && g != 2 && g != 4 && g != 8) return fail("group size heads/kvHeads must be 1, 2, 4 or 8");
  if (s->headDim != 64 && s->headDim != 128) return fail("headDim must be 64 or 128");
  if (s->n < 1) return fail("n must be at least 1");
  if (s->capacity < s->n) return fail("capacity must be >= n");
  if (s->dtype != KASCADE_F16 && s->dtype != KASCADE_BF16) return fail("dtype must be f16 or bf16");
  if (!(s->scale > 0.f)) return fail("scale must be positive");
  if (s->variant < 0 || s->variant > KASCADE_VARIANT_ALL) return fail("variant must be in 0..2147483647 (KascadeDecodeVariant bits)");
  if (s->splits < 0) return fail("splits must be >= 0 (0 = automatic)");
  return cudaSuccess;
}

extern "C" cudaError_t kascade_dense_decode(const KascadeDecodeShape* s, const void* q, const void* k,
                                            const void* v, void* out, void* workspace, size_t wsBytes,
                                            cudaStream_t st) {
  cudaError_t e = kascade_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  const Workspace w = workspace_layout(*s, 0, workspace, false);
  if (wsBytes < w.bytes) return cudaErrorInvalidValue;
  PartialArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.part_o = w.part_o;
  a.part_ml = w.part_ml;
  a.splits = attn_splits(*s, s->n, &a.chunk, false);
  return launch_attention(*s, kDense, a, out, st);
}

extern "C" cudaError_t kascade_reuse_decode(const KascadeDecodeShape* s, const void* q, const void* k,
                                            const void* v, void* out, int topk, const int* indices,
                                            int selKvHeads, const int* headMap, void* workspace,
                                            size_t wsBytes, cudaStream_t st) {
  cudaError_t e = kascade_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  if (topk < 1 || topk > s->n || selKvHeads < 1 || selKvHeads > kMaxKvHeads) return cudaErrorInvalidValue;
  const Workspace w = workspace_layout(*s, topk, workspace, false);
  if (wsBytes < w.bytes) return cudaErrorInvalidValue;
  PartialArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.indices = indices;
  a.topk = topk;
  a.selKvHeads = selKvHeads;
  for (int j = 0; j < s->kvHeads; ++j) {
    if (headMap[j] < 0 || headMap[j] >= selKvHeads) return cudaErrorInvalidValue;
    a.headMap[j] = headMap[j];
  }
  a.part_o = w.part_o;
  a.part_ml = w.part_ml;
  a.splits = attn_splits(*s, topk, &a.chunk, true);
  return launch_attention(*s, kGather, a, out, st);
}
