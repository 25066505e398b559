// Kascade CUDA prefill kernels: the C API the Node binding calls (beside kascade_cuda.h's decode API).
//
// No Node here: raw device pointers and a cudaStream_t in, cudaError_t out.
//
// Layout (one prefill chunk of `queries` tokens at positions queryStart .. n-1, n = queryStart + queries):
//   q    [batch, heads, queries, headDim]           f16 or bf16
//   k, v [batch, kvHeads, capacity, headDim]        f16 or bf16; tokens 0..n-1 valid (the chunk's own
//                                                   keys already written at queryStart..n-1)
//   out  [batch, heads, queries, headDim]           same dtype as q
//   stats [batch, heads, queries, 2] f32            per query row: max (log2 domain) and sum of the
//                                                   full causal softmax (what pooling normalises by)
//   counts  [tiles] int32 (device)                  the rolling budget k(s_t) of tile t, s_t = queryStart + t*T
//   indices [batch, kvHeads, tiles, kMax] int32     tile t uses its first counts[t] entries, order free;
//                                                   the anchors write -1 in the unused ones
// Query tile size T = 32 (KASCADE_PREFILL_TILE); queryStart a multiple of T. Query head h belongs to KV head
// j = h / g, g = heads / kvHeads in {1, 2, 4, 8}. headDim in {64, 128}.
#pragma once
#include <cstddef>
#include <cuda_runtime.h>

extern "C" {

#define KASCADE_PREFILL_TILE 32

struct KascadePrefillShape {
  int batch;
  int heads;
  int kvHeads;
  int headDim;
  int queries;     // query tokens in the chunk
  int queryStart;  // position of the first query; a multiple of the tile size
  int capacity;    // tokens per KV head row block (stride), >= queryStart + queries
  int tileSize;    // must be KASCADE_PREFILL_TILE
  float scale;     // softmax scale, usually 1/sqrt(headDim)
  int dtype;       // KascadeDType (0 f16, 1 bf16)
};

// Validates a shape; returns cudaErrorInvalidValue and fills `why` (if non-null, 256 bytes) when unsupported.
cudaError_t kascade_prefill_check_shape(const KascadePrefillShape* shape, char* why);

// Device workspace the anchors need (stats + the pooled scores of a bounded number of KV-head rows at a
// time, packed causally: tile t's row holds s_t floats). Dense and reuse need none.
size_t kascade_prefill_workspace_bytes(const KascadePrefillShape* shape);

// Dense causal prefill attention (FlashAttention-2 style on mma.sync). stats may be null.
cudaError_t kascade_dense_prefill(const KascadePrefillShape* shape, const void* q, const void* k,
                                  const void* v, void* out, float* stats, cudaStream_t stream);

// Layer 0: dense output, plus per KV head and tile the post-softmax pooled Top-k of the keys before the tile.
cudaError_t kascade_dense_anchor_prefill(const KascadePrefillShape* shape, const void* q, const void* k,
                                         const void* v, void* out, const int* counts, int kMax, int* indices,
                                         void* workspace, size_t workspaceBytes, cudaStream_t stream);

// Anchor: softmax statistics pass (reads K), pooled scores + Top-k per (KV head, tile), then sparse
// attention over the selected keys plus the causal diagonal tile.
cudaError_t kascade_anchor_prefill(const KascadePrefillShape* shape, const void* q, const void* k,
                                   const void* v, void* out, const int* counts, int kMax, int* indices,
                                   void* workspace, size_t workspaceBytes, cudaStream_t stream);

// Reuse: KV head j attends the rows indices[b, headMap[j], t, 0..counts[t]) (those before the tile) plus the
// causal diagonal tile. headMap is a HOST array of kvHeads entries in [0, selKvHeads).
cudaError_t kascade_reuse_prefill(const KascadePrefillShape* shape, const void* q, const void* k,
                                  const void* v, void* out, const int* counts, int kMax, const int* indices,
                                  int selKvHeads, const int* headMap, cudaStream_t stream);

// The pooled scores S[b, j, t, x] (f32, [batch, kvHeads, tiles, n]; 0 at and after the tile's start) as the
// anchor computes them, for checks. Needs kascade_prefill_workspace_bytes of workspace.
cudaError_t kascade_pooled_prefill_scores(const KascadePrefillShape* shape, const void* q, const void* k,
                                          float* pooled, void* workspace, size_t workspaceBytes,
                                          cudaStream_t stream);
}
