// Kascade CUDA decode kernels: the C API the Node binding (and any other host) calls.
//
// No Node here: raw device pointers and a cudaStream_t in, cudaError_t out.
//
// Layout (documented once, shared by every op in this folder):
//   q    [batch, heads, headDim]                    f16 or bf16
//   k, v [batch, kvHeads, capacity, headDim]        f16 or bf16; tokens 0..n-1 valid per sequence
//   out  [batch, heads, headDim]                    same dtype as q
//   selection indices [batch, kvHeads, topk] int32  key positions, order within a row free
// Query head h belongs to KV head j = h / g, g = heads / kvHeads in {1, 2, 4, 8}.
// headDim in {64, 128}. All sequences of a batch share n (contiguous cache per sequence;
// a page table can replace the `capacity` stride later).
//
// Every op needs a device workspace of kascade_decode_workspace_bytes(...) bytes.
#pragma once
#include <cstddef>
#include <cuda_runtime.h>

extern "C" {

enum KascadeDType { KASCADE_F16 = 0, KASCADE_BF16 = 1 };

struct KascadeDecodeShape {
  int batch;
  int heads;
  int kvHeads;
  int headDim;
  int n;         // valid keys per sequence (the new token's key included)
  int capacity;  // tokens per KV head row block (stride), >= n
  float scale;   // softmax scale, usually 1/sqrt(headDim)
  int dtype;     // KascadeDType
  int splits;    // 0 = automatic split-KV factor; otherwise forced (for tuning)
  int variant;   // kernel variant bits (tuning; 0 = the first measured kernels), see below
};

// KascadeDecodeShape::variant bits. Every combination computes the same result (checked by the
// device parity script for each variant it times); they differ in how K/V rows reach shared memory
// and in how the split-KV partials are merged.
enum KascadeDecodeVariant {
  KASCADE_VARIANT_BULK = 1,      // rows by cp.async.bulk (TMA bulk copies) on an mbarrier ring
  KASCADE_VARIANT_PREFETCH = 2,  // 16-byte cp.async with an L2 256-byte prefetch hint (cp.async path)
  KASCADE_VARIANT_FUSED = 4,     // the last split block of a KV head merges the splits (no combine kernel)
  KASCADE_VARIANT_SELECT2 = 8,   // anchors: Top-k passes over wider per-block chunks, the scores pass
                                 // clears the select state (no memsets)
  KASCADE_VARIANT_TMA2D = 16,    // contiguous passes (dense, layer 0, anchor scores): 16-key K/V tiles by
                                 // TMA tensor copies (128-byte swizzle); gathers use the other bits' loader
  KASCADE_VARIANT_P16 = 32,      // P enters P V as one 16-bit value (default: hi + lo halves, ~16 bits)
  KASCADE_VARIANT_WS_WIDE = 64,  // cuda-b1, session 8 (retired before: session 5's candidate lists of the multi-pass
                                 // select; session 7's V rows by cp.async and merge from shared memory): with 32768
                                 // at head dim 128, the ws gather as one 512-thread CTA per SM (8 producer + 8
                                 // consumer warps): half the splits per row, the last CTA merging them in one round
                                 // trip with twice the threads (session 8's first form, a cluster per row merging in
                                 // distributed shared memory, lost: reuse_b1_decode.cu)
  KASCADE_VARIANT_LEAN = 128,  // lean (stream-K) schedule: a persistent grid of the CTAs that fit at once, each an
                               // equal contiguous share of the flattened (sequence, KV head, key tile) space,
                               // partials at head boundaries; a wider combine merges them
  KASCADE_VARIANT_SELECT_CLUSTER = 256,  // anchors: the whole Top-k select (pooling, three radix digits,
                                         // compaction) as ONE launch, a thread block cluster per (sequence,
                                         // KV head) row holding its pooled scores in shared memory
                                         // (select_decode.cu); ties at the k-th value go to the lower index
  KASCADE_VARIANT_SELECT_V2 = 512,       // the same as 256 since session 5 (the cluster select's second version,
                                         // 4-9 % faster in the third session's call C, is the only one left)
  KASCADE_VARIANT_U16 = 1024,  // anchors (cuda-anchor, session 4): the scores / layer-0 pass writes, per query head and
                               // key, u = exp2(s - m16) as f16 (m16: the max of its 16-key step, one f32 per step and
                               // head) instead of the f32 logit; the select's pooling reads u and m16 (2.25 B per head
                               // and key instead of 4)
  KASCADE_VARIANT_STREAM_SELECT = 2048,  // anchors (cuda-anchor, session 4): the Top-k select as one persistent
                                         // occupancy-sized launch over the whole GPU (select_decode.cu): pooling + a
                                         // 12-bit first digit streamed over all rows, grid barriers, a compaction of
                                         // the rows' first-digit bins, then the last digits per row on the bin's list
  // Bits 4096 and 8192: taken by cuda-b1 (session 4) for the batch-1 reuse / launch path (documented
  // where the kernels land in decode_attention.cu).
  KASCADE_VARIANT_PDL = 4096,         // programmatic dependent launch: the attention kernels (and the combine)
                                      // launch with programmatic stream serialization and wait on the previous
                                      // kernel with griddepcontrol.wait, so their launch overlaps its tail
  KASCADE_VARIANT_GATHER_B1 = 8192,   // gathers (reuse, the anchor's sparse pass): the batch-1 gather schedule
  KASCADE_VARIANT_DEEP_SCORES = 16384,  // anchors (cuda-anchor, session 4): with bit 16 (TMA tiles), the scores pass
                                        // keeps a 6-stage ring per warp (two CTAs per SM instead of three; call A:
                                        // the pass ran 85 % of DRAM peak at 396 CTAs, the anchor 1 % faster at 264)
  KASCADE_VARIANT_WS_REGS = 65536,  // cuda-b1, session 7 (retired in session 6 as session 5's select inside the scores
                                    // pass): with 32768 at head dim 128 (K rows), the ws gather's producer warpgroup
                                    // gives registers to its consumer warpgroup (setmaxnreg 40 / 216): no spills
  KASCADE_VARIANT_GATHER_WS = 32768,  // gathers (reuse, the anchors' sparse pass; cuda-b1, session 5): the
                                      // warp-specialised gather (reuse_b1_decode.cu): a producer warp per CTA
                                      // issues one cp.async.bulk per 256-byte K/V row into a shared 64-row ring,
                                      // four consumer warps attend; the row's last CTA merges the splits
  KASCADE_VARIANT_SELECT_B1 = 131072,  // anchors (cuda-b1, session 5; not with 1024): the Top-k select as ONE
                                       // cooperative launch over the whole GPU for few rows (select_b1_decode.cu):
                                       // pooling + an 11-bit first digit over every CTA's share of all rows' keys,
                                       // the rank-k bin's keys listed, then an exact finish per row
  KASCADE_VARIANT_NO_L2_PROMO = 262144,  // cuda-anchor, session 6: the contiguous passes' K / V TMA maps (bit 16) ask for
                                        // no L2 promotion (as the lean schedule's do), on the split schedule too (call B
                                        // at 128k batch 32: dense 4040 -> 3805 us)
  KASCADE_VARIANT_SPARSE_U16 = 524288,  // cuda-anchor, session 7 (anchors with bit 1024; no effect without it): the
                                        // anchor's sparse pass takes the selected keys' scores from the f16
                                        // intermediate (u, m16) and copies only their V rows
                                        // (anchor_sparse_decode.cu); the stream select's list moves past the
                                        // intermediate so that it survives the select
  KASCADE_VARIANT_U16_KEY_MAJOR = 1048576,  // cuda-anchor, session 8 (anchors with bit 1024; no effect without it):
                                            // the f16 intermediate key-major (select_plan.h, u16_index): per 16-key
                                            // step, each key's u of the group's heads side by side, so a warp step
                                            // writes whole 128-byte lines of one contiguous stream per CTA and the
                                            // sparse pass copies a key's scores at once
  // (Session 8: bits 2097152 and 4194304 were the stream select's phase-3 L2 prefetch / staging lists in call A, bit
  // 2097152 the sparse pass's 5-stage ring in call B; all lost and were removed.)
  KASCADE_VARIANT_BURST_WRITES = 2097152,  // cuda-anchor, session 9 (anchors with bits 1024 and 1048576, or g 1): the
                                           // scores / layer-0 pass keeps each warp's f16 intermediate records in
                                           // shared memory and stores them only inside write windows of the GPU-wide
                                           // clock (%globaltimer) that every SM shares (burst_writes.cuh)
  KASCADE_VARIANT_WS_EPILOGUE = 4194304,  // cuda-b1, session 9 (with bit 64): the wide ws gather's epilogue: the warps
                                          // merge through bank-conflict-free shared rows (float2 stores, padded rows)
                                          // and the split counter is taken by the CTA's barrier and one acq_rel atomic
                                          // (no fence.sc by every thread before and after it; call B had only this
                                          // part). (Call A's bit 4194304 was the tagged split merge: partials as
                                          // (value, launch tag) words, no fence; it lost, reuse 22.05 against 21.57 us
                                          // at 128k batch 1, and was removed.)
  KASCADE_VARIANT_B1_L2_LOGITS = 8388608,  // cuda-b1, session 9 (batch-1 anchors and layer 0: bit 131072, f32 logits):
                                           // the pass stores its logits evict-last in L2 and streams its K / V tiles
                                           // evict-first; the b1 select reads them from L2 and then drops their lines
                                           // (discard.global.L2: never written back); the anchor's sparse pass copies
                                           // K rows (b1_l2.cuh)
  // (Session 10: bit 16777216 was cuda-anchor's step blocks, each 16-key step's maxima inside its u block; it lost in call A
  // and was removed.)
  KASCADE_VARIANT_B1_EARLY_SPARSE = 33554432,  // cuda-b1, session 10 (batch-1 anchors with bits 131072 and 32768, f32
                                               // logits): the anchor's sparse pass starts on the b1 select's phase-2
                                               // indices while phase 3 still finishes the rows (a ready count per row
                                               // in the select's state, release / acquire); the ws gather takes its
                                               // split's 16-entry groups interleaved, so every split's late groups
                                               // come last, and its splits fill the SMs the select's phase-3 CTAs
                                               // leave free (b1_early.cuh)
  // (Session 10: bit 67108864 was cuda-anchor's pooled16, the stream select's pooled rows as 16-bit top halves with phase
  // 4 recomputing its list's scores; it lost in calls A and B and was removed.)
  KASCADE_VARIANT_U16_EARLY_SPARSE = 134217728,  // cuda-anchor, session 10 (the anchor with bits 1024 and 524288): the
                                                 // stream select publishes each row's written index count after its
                                                 // phase 3 and releases the sparse pass (programmatic dependent launch),
                                                 // which reads the list as far as published while phase 4 finishes the
                                                 // rows (their softmax statistics kept from phase 2: the sparse pass
                                                 // reuses the partials' buffer)
  // (Session 11: bit 268435456 was cuda-anchor's stream select with two tiles' loads per phase-1 step and four tiles per
  // phase-3 pair of slot atomics; it spilled and lost in call A, and was removed. Retired: do not reuse.)
  KASCADE_VARIANT_WS_ACC = 536870912,  // cuda-b1, session 11 (the wide ws gather with bits 64 and 4194304, batch x KV
                                       // heads <= 64): the split merge through each row's f64 accumulator: every CTA
                                       // adds 2^m o and 2^m l of its partial (red.add.f64), the row's last CTA loads
                                       // those sums instead of its 16 slots (the slots stay as the fallback for
                                       // |m| > 768)
  // (Session 11: bit 1073741824 was cuda-anchor's stream select recomputing its pooled scores in phase 3 instead of
  // storing them in phase 1, and writing the anchor's sparse pass each selected key's scores beside its index; it lost in
  // call B and was removed. Retired: do not reuse.)
  KASCADE_VARIANT_ALL = 2147483647,  // the range of valid variant values is 0..KASCADE_VARIANT_ALL
};

// Bytes of workspace the ops below need: dense (topk 0) or the anchors (topk > 0)...
size_t kascade_decode_workspace_bytes(const KascadeDecodeShape* shape, int topk);
// ...and reuse over a selection of topk keys per KV head.
size_t kascade_reuse_workspace_bytes(const KascadeDecodeShape* shape, int topk);

// Validates a shape; returns cudaErrorInvalidValue and fills `why` (if non-null, 256 bytes) when it is unsupported.
cudaError_t kascade_check_shape(const KascadeDecodeShape* shape, char* why);

// Dense decode attention over all n keys (split-KV + combine).
cudaError_t kascade_dense_decode(const KascadeDecodeShape* shape, const void* q, const void* k,
                                 const void* v, void* out, void* workspace, size_t workspaceBytes,
                                 cudaStream_t stream);

// Layer 0: dense output, plus the post-softmax group-pooled Top-k (topk per KV head) into indices.
cudaError_t kascade_dense_anchor_decode(const KascadeDecodeShape* shape, const void* q, const void* k,
                                        const void* v, void* out, int topk, int* indices,
                                        void* workspace, size_t workspaceBytes, cudaStream_t stream);

// Anchor: fused scores + per-head softmax normalisation + group pooling + radix Top-k select,
// then sparse attention over the selected rows.
cudaError_t kascade_anchor_decode(const KascadeDecodeShape* shape, const void* q, const void* k,
                                  const void* v, void* out, int topk, int* indices, void* workspace,
                                  size_t workspaceBytes, cudaStream_t stream);

// Reuse: sparse attention over the rows indices[b, headMap[j], :] of KV head j.
// headMap is a HOST array of kvHeads entries, each in [0, selKvHeads).
cudaError_t kascade_reuse_decode(const KascadeDecodeShape* shape, const void* q, const void* k,
                                 const void* v, void* out, int topk, const int* indices,
                                 int selKvHeads, const int* headMap, void* workspace,
                                 size_t workspaceBytes, cudaStream_t stream);

// Pooled post-softmax scores S[b, j, x] (f32, [batch, kvHeads, n]) as the anchor computes them,
// for checking the select against the reference.
cudaError_t kascade_pooled_scores(const KascadeDecodeShape* shape, const void* q, const void* k,
                                  float* pooled, void* workspace, size_t workspaceBytes,
                                  cudaStream_t stream);
}

extern "C" {
// Fills count elements (dtype 0 f16, 1 bf16, 2 f32) with normal(0, stddev) values from a counter hash.
cudaError_t kascade_fill_normal(void* p, size_t count, int dtype, unsigned long long seed, float stddev,
                                cudaStream_t stream);
}
