// Internal interface between the prefill attention kernel (prefill_attention.cu) and the prefill anchor
// ops (prefill_anchor.cu), and the tensor-core helpers they share. Not part of the public C API.
#pragma once
#include "common.cuh"
#include "decode_device.cuh"  // mma16816, ldmatrix_x4(_trans), pack2: shared with the decode kernels
#include "prefill_api.h"

namespace kascade {
namespace pf {

constexpr int kT = KASCADE_PREFILL_TILE;  // query tile
constexpr int kKeys = 64;                 // keys per block step
constexpr int kMaxKvHeads = 64;

enum PrefillMode : int {
  kDense = 0,       // causal softmax(QK^T) V, 64 queries of one head per block
  kDenseStats = 1,  // the same, and the per-row (max, sum) statistics
  kStats = 2,       // statistics only (reads K, never V)
  kSparse = 3,      // one block = a tile's queries of every head of a KV group over a key list
};

struct PrefillArgs {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* stats;         // [batch, heads, queries, 2]
  const int* counts;    // kSparse: [tiles]
  const int* indices;   // kSparse: [batch, selKvHeads, tiles, kMax]
  int kMax;
  int selKvHeads;
  int headMap[kMaxKvHeads];
};

__host__ __device__ inline int tiles_of(const KascadePrefillShape& s) { return (s.queries + kT - 1) / kT; }

// Floats before tile t's row in a pair's packed pooled block (the anchors' workspace): sum over u < t of s_u.
__host__ __device__ __forceinline__ size_t packed_offset(int queryStart, int t) {
  return static_cast<size_t>(t) * queryStart + static_cast<size_t>(kT) * t * (t - 1) / 2;
}

// Pools v60 / v67 (prefill_pool_v17.cu): four consumer warpgroups issuing their 64-key steps' products in turns;
// head dim 128, g = 4. Same arguments and output as pool v1; with rowMax also each row's largest score in
// rowMax[pair, t]. poolVariant 60 (one tile per CTA, its steps round-robin) or 67 (the descriptors as constant
// offsets and, on launches of at least 2048 four-tile CTAs, one tile per consumer warpgroup, each K step loaded once
// for the four).
bool pool_v17_supports(const KascadePrefillShape& s);
cudaError_t launch_pool_v17(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                            float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, float* rowMax,
                            int poolVariant, cudaStream_t st);
// The anchors' Top-k select (prefill_select_v3.cu, after every pool since session 5): an exact radix select of
// each pooled row's counts[t] largest (11 + 11 + 10 bits, then one compaction pass; ties at the k-th largest lowest
// index first) with 16-byte loads, two in flight per thread. Writes indices [pair, t, 0 .. k), -1 in the rest.
// The third digit and the ties come from the candidates one pass keeps in shared memory (pool v32's finish: three
// passes over the row). rowMax (pool v56; [pairs, tiles], from the pool): bins under each row's largest score
// instead (two passes; prefill_select.cuh); with sampled (pool v60) a sampled band first, then one pass (one and an
// eighth passes; the two-pass select where the band misses).
cudaError_t launch_select_v3(const KascadePrefillShape& s, const float* pooled, int pairBase, int pairs,
                             size_t perPair, const int* counts, int kMax, int* indices, const float* rowMax,
                             bool sampled, cudaStream_t st);

cudaError_t launch_prefill_attention(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                     cudaStream_t st);
// The dense kernel v9 (prefill_dense_v9.cu; variant v22 runs it in its dense modes): dense and dense + statistics
// at head dim 128 with TMA tensor copies, a producer warpgroup and two consumer warpgroups (FlashAttention-3
// style), a 2-stage K/V ring.
bool prefill_dense_v9_supports(const KascadePrefillShape& s, PrefillMode mode);
cudaError_t launch_prefill_dense_v9(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                    cudaStream_t st);
// Sparse variant v12 (prefill_sparse_v9.cu, KASCADE_PREFILL_SPARSE=v12): dense v9's warp-specialised loop over
// the gathered key list, a producer warpgroup gathering K / V rows by cp.async into a 3-stage ring; head dim 128,
// g = 4 (else v1).
bool prefill_sparse_v9_supports(const KascadePrefillShape& s);
// variant 12 (one CTA per item) or 61 (the default: one CTA per SM walking the work items, the ring running on
// across them, the next step's list entries loaded ahead).
cudaError_t launch_prefill_sparse_v9(const KascadePrefillShape& s, const PrefillArgs& a, int variant,
                                     cudaStream_t st);
// Dense variant v22's statistics-only pass (prefill_stats_v17.cu): four consumer warpgroups (row halves x step
// parities) issuing their products in turns, each thread's exponentials against its previous (max, sum) offset,
// no per-step row max (re-based only when a step's sum reaches 2^64); head dim 128.
cudaError_t launch_prefill_stats_v17(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st);
// The variant the environment selects for a mode: dense 1 or 22 (the default), sparse 1 or 12 (the default).
int prefill_variant(PrefillMode mode);
// The number N of a variant name "vN" (N >= 1, nothing after it); 0 for null or anything else.
int prefill_variant_number(const char* name);

// 32-bit read-only global load (two 16-bit elements).
__device__ __forceinline__ uint32_t ld32g(const void* p) { return __ldg(reinterpret_cast<const unsigned int*>(p)); }

}  // namespace pf
}  // namespace kascade
