// Internal interface between the decode attention kernels (decode_attention.cu) and the
// anchor ops (anchor_decode.cu). Not part of the public C API.
#pragma once
#include <cuda.h>  // CUtensorMap (TMA descriptors; the driver entry point is fetched at run time)

#include "common.cuh"

namespace kascade {

// What the split-KV partial-attention kernel computes.
enum AttnMode : int {
  kDense = 0,        // softmax(q.K) V over keys 0..n-1
  kDenseLogits = 1,  // the same, and writes the raw logits (log2 domain) for pooling
  kScoresOnly = 2,   // logits + per-split softmax max/sum only (reads K, never V)
  kGather = 3,       // softmax over the rows named by an index list, through a head map
};

constexpr int kMaxKvHeads = 64;
constexpr int kTile = 64;              // split granularity: 4 warps x 16-key steps
constexpr int kMinKeysPerSplit = 256;  // the smallest split worth a block
constexpr int kSelectChunk = 1024;     // pooled scores per block in the Top-k passes
constexpr int kHistBins = 2048;        // 11-bit radix digits (11, 11, 10)
constexpr int kStateInts = 8;          // select state per row: prefix, rank, out count, ties, blocks done

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
};

// KASCADE_VARIANT_FUSED merges in the partial kernel when it can: one completion counter per
// (sequence, KV head) and the group's split weights in shared memory.
bool fused_combine_fits(const KascadeDecodeShape& s, int splits);
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

cudaError_t launch_partial(const KascadeDecodeShape& s, AttnMode mode, const PartialArgs& a,
                           cudaStream_t st);
cudaError_t launch_combine(const KascadeDecodeShape& s, int splits, const float* part_o,
                           const float* part_ml, void* out, cudaStream_t st);

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

}  // namespace kascade
