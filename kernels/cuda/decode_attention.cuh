// Internal interface between the decode attention kernels (decode_attention.cu) and the
// anchor ops (anchor_decode.cu). Not part of the public C API.
#pragma once
#include <utility>  // std::forward (launch_maybe_pdl)

#include <cuda.h>  // CUtensorMap (TMA descriptors; the driver entry point is fetched at run time)

#include "common.cuh"
#include "select_plan.h"  // the anchors' f16 intermediate layout (u16_*)

namespace kascade {

// What the split-KV partial-attention kernel computes.
enum AttnMode : int {
  kDense = 0,        // softmax(q.K) V over keys 0..n-1
  kDenseLogits = 1,  // the same, and writes the raw logits (log2 domain) for pooling
  kScoresOnly = 2,   // logits + per-split softmax max/sum only (reads K, never V)
  kGather = 3,       // softmax over the rows named by an index list, through a head map
  kGatherLite = 4,   // kGather with a 2-stage ring per warp (three CTAs per SM at head dim 128) and
                     // splits for the CTAs that fit: KASCADE_VARIANT_GATHER_B1 (cuda-b1)
  kScoresDeep = 5,   // kScoresOnly with a 6-stage ring per warp (two CTAs per SM: 264 streams on the H200,
                     // five steps ahead per warp): KASCADE_VARIANT_DEEP_SCORES with the TMA tiles (cuda-anchor)
};

constexpr int kMaxKvHeads = 64;
constexpr int kMaxGroup = 8;  // query heads per KV head, at most
constexpr int kTile = 64;              // split granularity: 4 warps x 16-key steps
constexpr int kMinKeysPerSplit = 256;  // the smallest split worth a block
constexpr int kSelectChunk = 1024;     // pooled scores per block in the Top-k passes
constexpr int kHistBins = 2048;        // 11-bit radix digits (11, 11, 10)
constexpr int kStreamBins = 4096;      // KASCADE_VARIANT_STREAM_SELECT: 12-bit first digit (histogram rows)
constexpr int kStateInts = 8;          // select state per row: prefix, rank, out count, ties, blocks done
constexpr int kB1ReadyInt = 7;         // KASCADE_VARIANT_B1_EARLY_SPARSE: the b1 select's ready count (+ 1)

struct PartialArgs {
  const void* q;
  const void* k;
  const void* v;
  const int* indices;  // kGather: [batch, selKvHeads, topk]
  int topk;
  int selKvHeads;
  int headMap[kMaxKvHeads];
  float* logits;   // [batch, heads, n], log2-domain scaled logits
  float* part_o;   // [batch, heads, splits, headDim] unnormalised partial outputs
  float* part_ml;  // [batch, heads, splits, 2] running max (log2 domain) and sum
  int splits;
  int chunk;       // list entries per split, a multiple of kTile
  int variant;     // KascadeDecodeVariant bits (the loader bit picks the kernel template)
  void* out;       // KASCADE_VARIANT_FUSED: [batch, heads, headDim], written by each KV head's last block
  unsigned* clearHist;  // KASCADE_VARIANT_SELECT2: split 0 of each (b, j) zeroes its histogram row...
  int* clearState;      // ...and its select state, for the Top-k passes that follow
  int writeProbe;       // diagnosis only (env KASCADE_DEBUG_NO_LOGIT_WRITES=1..3, 6, 7; wrong results): the scores /
                        // layer-0 pass's intermediate writes: 1 none, 2 u computed but not stored, 3 u without m16,
                        // 6 / 7 half the CTAs store (decode_attention.cu); 0 in every user op
  // KASCADE_VARIANT_BURST_WRITES (anchor_decode.cu sets them; 0 = direct stores): the scores / layer-0 pass stores its
  // f16 intermediate only in the first 2^burstWindowLog2 ns of every 2^burstPeriodLog2 ns (burst_writes.cuh).
  int burstPeriodLog2;
  int burstWindowLog2;
  int burstDrainNow;  // tuning (KASCADE_BURST's third field): a warp's last records stored at its end, no window
  int burstSync;      // tuning (KASCADE_BURST's fourth field): the warps' own stores instead of TMA bulk copies
  int burstGroupsLog2;  // tuning (KASCADE_BURST's fifth field): the SMs in 2^g groups with staggered windows
  // KASCADE_VARIANT_B1_EARLY_SPARSE (cuda-b1, session 10; the anchor's sparse pass after the b1 select, set by
  // anchor_decode.cu, else null): the select's state rows [rows][kStateInts]; word kB1ReadyInt of a row counts the
  // entries of its index list already written, plus one (0: none yet), so the ws gather starts before the select ends.
  const int* early;
  // KASCADE_VARIANT_LEAN (filled by launch_partial): the flattened (b, j, key tile) space of
  // leanWork tiles, leanTiles per (b, j) row, shared by leanCtas CTAs; `splits` is then the
  // partial slots per row (LeanPlan::slots).
  long long leanWork;
  int leanTiles;
  int leanCtas;
};

// KASCADE_VARIANT_LEAN: the lean (stream-K) work partition. The key list of every (b, j) row is
// cut into kTile-key tiles, T per row; rows are laid end to end (row r = b * kvHeads + j), W = rows x T
// tiles in all, and CTA c of P takes tiles [floor(c W / P), floor((c + 1) W / P)): equal shares
// (sizes differ by at most one tile), crossing row boundaries. Each CTA writes one partial
// (m, l, o) per row it touches, in slot c - (the first CTA of that row); a row has at most
// `slots` of them, and the CTA holding a row's last tile marks the row's unused slots empty
// (m = -inf, l = 0). packages/cuda/src/lean.ts is the TypeScript twin the tests check.
struct LeanPlan {
  long long work;  // W, tiles in all
  int tiles;       // T, tiles per row
  int ctas;        // P, CTAs (<= W: every CTA gets at least one tile)
  int slots;       // partial slots per row: 1 + ceil((T - 1) P / W), at most P
};
__host__ __device__ inline long long lean_tile_begin(long long c, long long work, int ctas) {
  return c * work / ctas;
}
// The CTA that holds tile t: the largest c with floor(c W / P) <= t.
__host__ __device__ inline int lean_cta_of(long long t, long long work, int ctas) {
  return static_cast<int>(((t + 1) * ctas - 1) / work);
}
inline LeanPlan lean_plan(long long rows, int listLen, int ctas) {
  LeanPlan p{};
  p.tiles = listLen > 0 ? (listLen + kTile - 1) / kTile : 1;
  p.work = rows * p.tiles;
  p.ctas = static_cast<int>(ctas < 1 ? 1 : (ctas > p.work ? p.work : ctas));
  // A row's tiles [t0, t0 + T) meet CTAs lean_cta_of(t0) .. lean_cta_of(t0 + T - 1), and
  // floor(x + y) - floor(x) <= ceil(y) with y = (T - 1) P / W bounds their count.
  const long long s = 1 + ((p.tiles - 1LL) * p.ctas + p.work - 1) / p.work;
  p.slots = static_cast<int>(s < p.ctas ? s : p.ctas);
  return p;
}
// One segment of a lean CTA: the CTA's tiles [tile, ...) within one row, as key-list entries.
struct LeanSegment {
  long long row;       // b * kvHeads + j
  int begin, end;      // list entries [begin, end) of the row (end <= listLen)
  int slot, nslots;    // this CTA's partial slot in the row, and the CTAs the row has
  bool rowLast;        // this CTA holds the row's last tile (it pads slots nslots..slots-1)
  long long nextTile;  // where the CTA's next segment starts
};
__host__ __device__ inline LeanSegment lean_segment(int cta, long long tile, long long tileEnd, long long work,
                                                    int tiles, int ctas, int listLen) {
  LeanSegment g;
  g.row = tile / tiles;
  const long long t0 = g.row * tiles;
  const long long segEnd = tileEnd < t0 + tiles ? tileEnd : t0 + tiles;
  const int c0 = lean_cta_of(t0, work, ctas), c1 = lean_cta_of(t0 + tiles - 1, work, ctas);
  g.slot = cta - c0;
  g.nslots = c1 - c0 + 1;
  g.rowLast = cta == c1;
  g.begin = static_cast<int>((tile - t0) * kTile);
  const long long e = (segEnd - t0) * kTile;
  g.end = static_cast<int>(e < listLen ? e : listLen);
  g.nextTile = segEnd;
  return g;
}
// Splits per row so that `rows` rows' splits fill at most `ctas` CTAs (one wave): floor(ctas / rows) (at
// least 1, at most one per `grain`-entry group), then equal whole groups per split; returns the split
// count and writes the list entries per split to *chunk. KASCADE_VARIANT_GATHER_B1 (kGatherLite) cuts
// in 64-key tiles (grain kTile), KASCADE_VARIANT_GATHER_WS (reuse_b1_decode.cu) in 16-key groups.
// packages/cuda/src/lean.ts has the twin (liteSplits).
inline int grain_split_count(long long rows, int listLen, long long ctas, int grain, int* chunk) {
  const long long groups = listLen > 0 ? (listLen + grain - 1) / grain : 1;
  long long S = rows > 0 ? ctas / rows : 1;
  S = S < 1 ? 1 : (S > groups ? groups : S);
  const long long per = (listLen + S - 1) / S;
  const int c = static_cast<int>((per + grain - 1) / grain * grain);
  *chunk = c < grain ? grain : c;
  return listLen > 0 ? static_cast<int>((listLen + *chunk - 1) / *chunk) : 1;
}
inline int lite_split_count(long long rows, int listLen, long long ctas, int* chunk) {
  return grain_split_count(rows, listLen, ctas, kTile, chunk);
}
constexpr int kWsGroup = 16;  // KASCADE_VARIANT_GATHER_WS: split granularity (one consumer warp's step)

// The fused merge's completion counters (one per (sequence, KV head) row) cover this many rows.
constexpr int kMaxFusedRows = 1 << 16;

// Lean grids never exceed this many CTAs per SM (the workspace is sized for it).
constexpr int kLeanMaxCtasPerSm = 4;

// Launches `kernel` on `st`; with `pdl` (KASCADE_VARIANT_PDL) as a programmatic dependent launch, so
// it may begin while the previous kernel of the stream finishes (the kernel waits with
// griddepcontrol.wait before it touches global memory).
template <typename... Params, typename... Args>
inline cudaError_t launch_maybe_pdl(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block,
                                    size_t smem, cudaStream_t st, Args&&... args) {
  if (!pdl) {
    kernel<<<grid, block, smem, st>>>(std::forward<Args>(args)...);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// KASCADE_VARIANT_FUSED merges in the partial kernel when it can: one completion counter per
// (sequence, KV head) and the group's split weights in shared memory.
bool fused_combine_fits(const KascadeDecodeShape& s, int splits);
// KASCADE_VARIANT_GATHER_WS (reuse_b1_decode.cu): the warp-specialised gather for kGather passes; sets
// a.splits / a.chunk (ws_splits) and merges (fused, or the combine kernel).
cudaError_t launch_gather_ws(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st);
// Its split count for a list of listLen entries at perSm CTAs per SM (a forced `splits` wins).
int ws_splits(const KascadeDecodeShape& s, int listLen, int perSm, int* chunk);
// KASCADE_VARIANT_SPARSE_U16 (anchor_sparse_decode.cu): the anchor's sparse pass over a.indices with the scores
// from the f16 intermediate at a.logits (u16 layout) and only V rows copied; sets a.splits / a.chunk, merges.
cudaError_t launch_u16_sparse(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st);
// Launches the partial kernel, then the combine unless the fused variant merged already.
cudaError_t launch_attention(const KascadeDecodeShape& s, AttnMode mode, PartialArgs& a, void* out,
                             cudaStream_t st);

int device_sm_count();
// Split-KV factor for a key list of listLen entries; writes the entries per split to *chunk.
int attn_splits(const KascadeDecodeShape& s, int listLen, int* chunk, bool gather);

// KASCADE_VARIANT_TMA2D: tensor maps of K and V, [batch x kvHeads][n][headDim] (rows >= n read as zeros).
struct TmaMaps {
  CUtensorMap k;
  CUtensorMap v;
};

// Launches the partial kernel. KASCADE_VARIANT_LEAN: fills a's lean fields and sets a.splits to the
// partial slots per row.
cudaError_t launch_partial(const KascadeDecodeShape& s, AttnMode mode, PartialArgs& a, cudaStream_t st);
// KASCADE_VARIANT_LEAN: CTAs of the lean grid for a kernel with perSm resident CTAs per SM, over
// `work` tiles (gathers with long shares: two waves).
int lean_ctas(const KascadeDecodeShape& s, int perSm, bool gather, long long work);
cudaError_t launch_combine(const KascadeDecodeShape& s, int splits, const float* part_o,
                           const float* part_ml, void* out, cudaStream_t st);
// KASCADE_VARIANT_LEAN's combine (head-dim slices, float4 loads, empty slots skipped).
cudaError_t launch_lean_combine(const KascadeDecodeShape& s, int splits, const float* part_o,
                                const float* part_ml, void* out, cudaStream_t st);

// KASCADE_VARIANT_U16 (the anchors' f16 intermediate): u16_stride, u16_bytes and the layout in select_plan.h.
// The layout (u16_layout) a variant gives a group of GS query heads per KV head.
__host__ __device__ inline int u16_layout_of(int variant, int GS) {
  return u16_layout((variant & KASCADE_VARIANT_U16_KEY_MAJOR) != 0, GS);
}
// The m16 rows (the base u16_m16_index counts from).
__host__ __device__ inline float* u16_m16(void* logits, size_t rows, int n) {
  return reinterpret_cast<float*>(static_cast<char*>(logits) + u16_m16_offset(rows, n));
}

// Workspace carve-up, shared by every op.
struct Workspace {
  float* part_o;
  float* part_ml;
  float* logits;
  float* pooled;
  unsigned* hist;
  int* state;
  size_t bytes;
};

// `select`: include the anchor's logits and pooled-score buffers.
Workspace workspace_layout(const KascadeDecodeShape& s, int topk, void* base, bool select);
// The anchors' workspace (anchor_decode.cu): workspace_layout's for the shape the anchor ops run (anchor_shape).
size_t anchor_workspace_bytes(const KascadeDecodeShape& s, int topk);
// KASCADE_VARIANT_SELECT_B1 (select_b1_decode.cu): the anchors' Top-k select from the f32 logits and the
// scores pass's `splits` partial (m, l) per head, as one cooperative launch.
// publish (KASCADE_VARIANT_B1_EARLY_SPARSE): the rows' ready counts at state word kB1ReadyInt, for the sparse pass.
cudaError_t b1_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                      cudaStream_t st, bool publish = false);

}  // namespace kascade
