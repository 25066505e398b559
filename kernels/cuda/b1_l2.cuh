// KASCADE_VARIANT_B1_L2_LOGITS (cuda-b1, ninth session): the batch-1 anchors' f32 logits kept in L2.
//
// At 128k batch 1 the scores pass (and layer 0's dense pass with the logits) writes 16.8 MB of f32 logits while it
// streams 268 MB of K (536 MB of K and V): session 8 measured at batch 32 that writes trickling into a read stream
// cost DRAM time per unit of time during which they trickle (read / write turnarounds), not per byte. 16.8 MB fits
// the H200's 50 MB L2, so under this bit the pass stores its logits with an evict-last L2 policy and loads its K / V
// tiles with an evict-first one (session 6 saw the pair keep ~80 % of a 19 MB intermediate in L2 at batch 32), the
// b1 select reads them from L2 in its phase 1, and past its second grid barrier its CTAs without a row in phase 3 drop
// the lines (`discard.global.L2`: invalidated, never written back) while the rows' CTAs finish phase 3. The anchor's
// sparse pass then copies K rows instead of reading the logits. (Call A, 128k batch 1: the sparse pass's last CTA per
// row dropping its KV head's 2 MB took that pass from 22.8 to 31.1 us, ~1 discard per SM clock; moved to the select.)
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define KASCADE_B1_HD __host__ __device__
#else
#define KASCADE_B1_HD
#endif

namespace kascade {

// Share `part` of `parts` of the 128-byte L2 lines wholly inside the bytes [begin, end) (the f32 logits: a line shared
// with what follows them, the select's candidate list, is never dropped), as line indices [*first, *last) from address
// 0; the shares of parts 0 .. parts - 1 cover those lines once each (checked on the host by src/b1-l2.test.ts).
KASCADE_B1_HD inline void l2_line_share(uintptr_t begin, uintptr_t end, long long part, long long parts,
                                        uintptr_t* first, uintptr_t* last) {
  const uintptr_t lo = (begin + 127) / 128, hi = end / 128;
  const uintptr_t len = hi > lo ? hi - lo : 0;
  *first = lo + static_cast<uintptr_t>(static_cast<unsigned long long>(len) * part / parts);
  *last = lo + static_cast<uintptr_t>(static_cast<unsigned long long>(len) * (part + 1) / parts);
}

#ifdef __CUDACC__

// L2 cache policies (createpolicy; no side effect, so the compiler may hoist them).
__device__ __forceinline__ uint64_t l2_policy_evict_last() {
  uint64_t p;
  asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t p;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
}

// A 4-byte store under an L2 cache policy.
__device__ __forceinline__ void st_global_l2_policy(float* p, float v, uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.f32 [%0], %1, %2;\n" ::"l"(p), "f"(v), "l"(policy) : "memory");
}

// A [16 rows][64 elements] box of a 3D tensor map (the contiguous passes' TMA2D tiles) under an L2 cache policy.
__device__ __forceinline__ void tma_load_3d_policy(uint32_t smem, const void* map, int c0, int c1, int c2,
                                                   uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, "
      "%4, %5}], [%2], %6;\n" ::"r"(smem),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "l"(policy)
      : "memory");
}

// Drops the L2 lines [lineBegin, lineEnd) (128-byte line indices from address 0), threads tid, tid + nt, ... of the
// caller; their data is undefined afterwards and never written back.
__device__ __forceinline__ void l2_discard_lines(uintptr_t lineBegin, uintptr_t lineEnd, int tid, int nt) {
  for (uintptr_t l = lineBegin + static_cast<uintptr_t>(tid); l < lineEnd; l += static_cast<uintptr_t>(nt))
    asm volatile("discard.global.L2 [%0], 128;\n" ::"l"(l * 128) : "memory");
}

#endif  // __CUDACC__

}  // namespace kascade
