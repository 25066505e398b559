// The cluster Top-k select of the decode anchors (select_decode.cu), called by anchor_decode.cu
// under variant bits 256 (KASCADE_VARIANT_SELECT_CLUSTER) and 512 (KASCADE_VARIANT_SELECT_V2).
#pragma once
#include "decode_attention.cuh"
#include "select_plan.h"

namespace kascade {

// KascadeDecodeShape::variant bits of the cluster select (kascade_cuda.h).
constexpr int kVariantSelectCluster = KASCADE_VARIANT_SELECT_CLUSTER;  // cluster_select_kernel
constexpr int kVariantSelectV2 = KASCADE_VARIANT_SELECT_V2;            // cluster_select2_kernel

// Pools the logits of w.logits (per-head softmax from the scores pass's per-split max/sum in
// w.part_ml) and writes each row's exact Top-k (topk indices, key order) into indices, in one
// launch: one thread block cluster per (sequence, KV head) row. Returns cudaErrorNotSupported
// (nothing launched) when the device cannot run the cluster configuration; the caller then runs
// the multi-pass select.
cudaError_t cluster_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                           cudaStream_t st);

// KASCADE_VARIANT_STREAM_SELECT (bit 2048; bit 1024 implies it and switches it to the f16 intermediate): the Top-k of
// every row as ONE cooperative launch of an occupancy-sized grid (stream_select_kernel): the rows' key
// tiles laid end to end in equal shares per CTA (like the lean schedule), pooled scores + a 12-bit
// first-digit histogram streamed once, grid barriers between phases, the rows' first-digit bins
// compacted (keys above the bin go straight to `indices`, the bin's members to a list), then one CTA per
// row finishes on its list (exactly: bit 1024 recomputes the keys near the k-th score). Ties at the k-th
// value: any of them (order free).
// q and k: the op's query and K cache (bit 1024 recomputes the keys near the k-th score exactly).
cudaError_t stream_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                          const void* q, const void* k, cudaStream_t st);

// The arguments of the stream select's kernel.
struct StreamSelectArgs {
  int n, nU, heads, kvHeads, splits, topk, tiles, u16, capacity;
  int layout;     // bit 1048576 (with u16): the intermediate's order (select_plan.h, u16_layout)
  int early;      // bit 134217728 (with u16 and 524288): ready counts at state word kB1ReadyInt, the sparse pass released
                  // after phase 3, the rows' softmax statistics kept in their histogram rows from phase 2
  float qscale;  // softmax scale x log2(e): the scores pass's log2-domain logits
  long long rows, work;
  const float* logits;  // [batch x heads][n] (without bit 1024)
  const __half* u;      // bit 1024: [batch x heads][nU]
  const float* m16;     // bit 1024: [batch x heads][nU / 16]
  const void* q;        // bit 1024's exact recompute: [batch, heads, D]
  const void* k;        // [batch, kvHeads, capacity, D]
  const float* part_ml;
  float* pooled;    // [rows][nU]
  unsigned* hist;   // [rows][kStreamBins]
  int* state;       // [rows][kStateInts]
  int* cand;        // [rows][n] list keys
  float* candVal;   // [rows][n] their pooled scores (phase 4: the window's exact scores)
  int* out;         // [rows][topk]
  long long* trace;  // KASCADE_STREAM_SELECT_TRACE: CTA 0's clock64 at the start and after each phase
};
// Bit 134217728: the ready count of a row (its index list's entries written, plus one) at state word kB1ReadyInt.
__device__ __forceinline__ void stream_publish_ready(int* st, int count) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(st + kB1ReadyInt), "r"(count + 1) : "memory");
}
// Fills every field but the trace from the shape, the scores pass's `splits` and the workspace.
StreamSelectArgs stream_select_args(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk,
                                    int* indices, const void* q, const void* k);

// Stream select constants (the workspace carve-up sizes its histogram rows with kStreamBins).
constexpr int kStreamThreads = 256;
static_assert(kStreamTile == 8 * kStreamThreads, "stream select tiles: 8 keys per thread");
constexpr int kStreamCache = 8192;               // list values kept in shared memory for the last digits

}  // namespace kascade
