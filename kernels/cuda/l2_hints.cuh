// L2 cache policies of the anchors' row workers (KASCADE_VARIANT_ROW_WORKERS, bit 1048576; cuda-anchor, session 7):
// the scores / layer-0 pass streams its K (and V) tiles with evict-first and stores its f16 intermediate with
// evict-last, and each row's worker drops the row's lines from L2 once it has read them, so an intermediate that
// is consumed while still in L2 is never written back to DRAM. (Session 6 used the same policies per batch chunk.)
// Not part of the public C API.
#pragma once
#include <cuda.h>

#include <cstdint>

namespace kascade {

__device__ __forceinline__ uint64_t l2_policy_evict_last() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ void st_u32_hint(void* p, unsigned v, uint64_t pol) {
  asm volatile("st.global.L2::cache_hint.b32 [%0], %1, %2;" ::"l"(p), "r"(v), "l"(pol) : "memory");
}
// A [16 rows][64 elements] box of a 3D tensor map with an L2 cache policy (the pass's K / V tiles).
__device__ __forceinline__ void tma_load_3d_hint(void* smem, const CUtensorMap* map, int c0, int c1, int c2,
                                                 uint64_t* bar, uint64_t pol) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, "
      "%4, %5}], [%2], %6;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem))),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(static_cast<uint32_t>(__cvta_generic_to_shared(bar))), "r"(c0),
      "r"(c1), "r"(c2), "l"(pol)
      : "memory");
}
// Drops the 128-byte lines that lie wholly inside [p, p + bytes) from L2 without writing them back (their
// contents become undefined). The NT threads of the CTA share the lines; call after a barrier that follows every
// read of the range (lines that straddle its ends are kept: a neighbour may still read them).
template <int NT>
__device__ __forceinline__ void l2_discard_range(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t lo = (a + 127) & ~static_cast<uintptr_t>(127), hi = (a + bytes) & ~static_cast<uintptr_t>(127);
  for (uintptr_t x = lo + static_cast<uintptr_t>(threadIdx.x) * 128; x < hi; x += static_cast<uintptr_t>(NT) * 128)
    asm volatile("discard.global.L2 [%0], 128;" ::"l"(x) : "memory");
}

}  // namespace kascade
