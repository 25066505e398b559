// Internal interface between the prefill attention kernel (prefill_attention.cu) and the prefill anchor
// ops (prefill_anchor.cu), and the tensor-core helpers they share. Not part of the public C API.
#pragma once
#include "common.cuh"
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

// Pool variant v2 (prefill_pool_wgmma.cu, KASCADE_PREFILL_POOL=v2): the anchors' pooled scores on wgmma, the
// same output as pool_prefill_kernel (prefill_anchor.cu); denseLayout = 1 writes [pair, tiles, n] rows.
cudaError_t launch_pool_wgmma(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                              float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                              cudaStream_t st);

// Pool variant v3 (prefill_pool_v3.cu, KASCADE_PREFILL_POOL=v3): v2 with the next step's wgmma in flight
// during this step's exponentials (g <= 4; g = 8 runs v2). Same arguments and output. fusedStats (pool v4,
// the anchors only, g <= 4: pool_v3_supports): the block first computes its rows' softmax statistics itself
// (a sweep over keys 0 .. s_t + 31), so the anchor's separate statistics pass is skipped and stats unused.
bool pool_v3_supports(const KascadePrefillShape& s);
// swizzle (pools v5 / v6): the Q and K tiles in the 128-byte swizzled layout instead of the interleave one.
cudaError_t launch_pool_v3(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                           float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                           bool fusedStats, bool swizzle, cudaStream_t st);

// Pool variant v19 (prefill_pool_v17.cu): four consumer warpgroups taking 64-key steps round-robin and issuing
// their products in step order; head dim 128, g = 4. Same arguments and output as the other pools.
bool pool_v17_supports(const KascadePrefillShape& s);
cudaError_t launch_pool_v17(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                            float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, cudaStream_t st);

// The anchors' Top-k select (prefill_select_v3.cu, after every pool since session 5): an exact radix select of
// each pooled row's counts[t] largest (11 + 11 + 10 bits, then one compaction pass; ties at the k-th largest lowest
// index first) with 16-byte loads, two in flight per thread. Writes indices [pair, t, 0 .. k), -1 in the rest.
cudaError_t launch_select_v3(const KascadePrefillShape& s, const float* pooled, int pairBase, int pairs,
                             size_t perPair, const int* counts, int kMax, int* indices, cudaStream_t st);

cudaError_t launch_prefill_attention(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                     cudaStream_t st);
// Variant v2 (prefill_attention_v2.cu): 32 query rows per warp. launch_prefill_attention uses it when the
// environment says KASCADE_PREFILL_DENSE=v2 (dense, dense + statistics, statistics) or
// KASCADE_PREFILL_SPARSE=v2 (sparse); read at every launch, so one process can time both.
// wide: dense modes with 8 warps (256 queries) per block (dense variant v5).
cudaError_t launch_prefill_attention_v2(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                        cudaStream_t st, bool wide = false);
// Variants v3 / v4 (prefill_attention_wgmma.cu): Hopper wgmma, one warpgroup per block (v3) or two (v4;
// sparse: at g >= 4, g = 2 as v3); KASCADE_PREFILL_DENSE / KASCADE_PREFILL_SPARSE = v3 or v4 (sparse at
// g = 1 stays on v1).
cudaError_t launch_prefill_attention_wgmma(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                           cudaStream_t st, bool twoWarpgroups);
bool prefill_wgmma_supports(const KascadePrefillShape& s, PrefillMode mode);
// Variant v6 (prefill_dense_v6.cu, KASCADE_PREFILL_DENSE / _SPARSE=v6): wgmma with 128-key steps, two
// warpgroups per block and the next step's Q K^T overlapping this step's softmax; dense and dense +
// statistics at head dim 128, sparse at head dim 128 and g = 4 (prefill_dense_v6_supports); otherwise
// dense runs v2 and sparse v5.
// Variant v7: v6 with Q and K in the 128-byte swizzled layout (swizzle = 1); v8: Q, K and V (swizzle = 2).
bool prefill_dense_v6_supports(const KascadePrefillShape& s, PrefillMode mode);
cudaError_t launch_prefill_dense_v6(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                    cudaStream_t st, int swizzle = 0);
// The dense kernel v9 (prefill_dense_v9.cu; variants v12 and v17 run it in their dense modes): dense and dense +
// statistics at head dim 128 with TMA tensor copies, a producer warpgroup and two consumer warpgroups
// (FlashAttention-3 style), a 2-stage K/V ring.
bool prefill_dense_v9_supports(const KascadePrefillShape& s, PrefillMode mode);
cudaError_t launch_prefill_dense_v9(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                    cudaStream_t st);
// Sparse variants v9 / v12 (prefill_sparse_v9.cu, KASCADE_PREFILL_SPARSE=v9 / v12): dense v9's warp-specialised
// loop over the gathered key list, a producer warpgroup gathering K / V rows by cp.async into a 2- / 3-stage
// ring; head dim 128, g = 4 (else v8).
bool prefill_sparse_v9_supports(const KascadePrefillShape& s);
cudaError_t launch_prefill_sparse_v9(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st,
                                     int stages = 2);
// Sparse variant v5 (prefill_sparse_v5.cu): v2's warp layout with the key positions staged one step ahead in
// shared memory, masks only on the steps that need them, and K / V in separate copy groups;
// KASCADE_PREFILL_SPARSE=v5. Dense variant v5 (KASCADE_PREFILL_DENSE=v5): v2 with 8-warp blocks in the dense
// and dense + statistics modes (the statistics-only mode runs v2).
cudaError_t launch_prefill_sparse_v5(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st);
// Dense variant v17's statistics-only pass (prefill_stats_v17.cu): four consumer warpgroups (row halves x step
// parities) issuing their products in turns; head dim 128.
cudaError_t launch_prefill_stats_v17(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st);
// The variant the environment selects for a mode: 1 .. 8, 12, 17 (defaults: dense 17, sparse 12).
int prefill_variant(PrefillMode mode);
// The number N of a variant name "vN" (N >= 1, nothing after it); 0 for null or anything else.
int prefill_variant_number(const char* name);

// mma.sync m16n8k16 (f32 accumulate) on 16-bit operands.
template <typename T>
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldsm_x4(uint32_t* r, const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t* r, const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
// 32-bit read-only global load (two 16-bit elements).
__device__ __forceinline__ uint32_t ld32g(const void* p) { return __ldg(reinterpret_cast<const unsigned int*>(p)); }

template <typename T>
__device__ __forceinline__ uint32_t pack_2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack_2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack_2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

}  // namespace pf
}  // namespace kascade
