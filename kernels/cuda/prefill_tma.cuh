// The warp-specialised skeleton the TMA prefill kernels share (sm_90a): mbarrier helpers, TMA tensor copies,
// wgmma descriptors of 128-byte-swizzled tiles, and the host-side tensor-map encoder.
//
// Tiles are [regions of 64 columns][rows][64 elements] of 16-bit values with the 16-byte chunk c of row r at
// chunk c ^ (r % 8): what a 64-element-wide TMA box with the 128-byte swizzle writes (region stride rows x 128 B).
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "prefill_attention.cuh"

namespace kascade {
namespace pf {
namespace tma {

// The mbarrier basics are decode_device.cuh's: smem_u32, mbar_init, mbar_fence_init (after every mbar_init of a
// block, before the barriers are used; then a block barrier), mbar_arrive_expect_tx, mbar_arrive.
using kascade::mbar_arrive;
using kascade::mbar_arrive_expect_tx;
using kascade::mbar_fence_init;
using kascade::mbar_init;
using kascade::smem_u32;
__device__ __forceinline__ uint32_t mbar_try(uint32_t a, unsigned parity) {
  uint32_t done;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(a), "r"(parity)
      : "memory");
  return done;
}
// Waits until the barrier's phase of this parity has completed. A wait past 2^22 polls (each at least tens of
// cycles, or a hardware-timed suspension: over 70 ms; the real waits take microseconds) traps, so a pipeline
// bug fails its own process at once instead of holding every SM until the caller's time limit.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
  const uint32_t a = smem_u32(bar);
  for (uint32_t polls = 0; !mbar_try(a, parity);)
    if (++polls == (1u << 22)) __trap();
}
// The same without the count (hot consumer loops, where the count's register can make ptxas spill).
__device__ __forceinline__ void mbar_spin(uint64_t* bar, unsigned parity) {
  const uint32_t a = smem_u32(bar);
  while (!mbar_try(a, parity)) {
  }
}
// One box of a 3D map into shared memory, completing on `bar`.
__device__ __forceinline__ void copy_3d(void* smem, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(smem_u32(smem)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
// Descriptor of the kc-th 16-column slice of a K-major wgmma operand: a swizzled tile of `rows` rows starting at
// `tile` (leading offset unused, stride 1024 B between 8-row groups, swizzle mode 128 B).
__device__ __forceinline__ uint64_t k_desc(const void* tile, int rows, int kc) {
  const char* p = static_cast<const char*>(tile) + (kc >> 2) * rows * 128 + (kc & 3) * 32;
  const uint32_t a = smem_u32(p);
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
// The same descriptor split for loops that issue many (pool v64): its high word is the constant kDescHi, its low
// word that of slice 0 plus the constant k_desc_step(rows, kc) (the 14-bit address field cannot carry: shared
// addresses stay below 2^18), so a slice's descriptor is one add instead of the address arithmetic above.
constexpr uint32_t kDescHi = (1024 >> 4) | (1u << 30);
__device__ __forceinline__ uint32_t k_desc_lo(const void* tile) {
  return ((smem_u32(tile) & 0x3FFFF) >> 4) | (1u << 16);
}
__host__ __device__ constexpr uint32_t k_desc_step(int rows, int kc) {
  return static_cast<uint32_t>(((kc >> 2) * rows * 128 + (kc & 3) * 32) >> 4);
}
// V as a P V product's MN-major B operand: the kk-th 16-key slice of a swizzled [2 regions][keys][64] tile
// (leading offset = the region stride, the next 64 columns of d; stride offset 1024 B, the next 8 keys).
__device__ __forceinline__ uint64_t v_desc(const void* tile, int keys, int kk) {
  const char* p = static_cast<const char*>(tile) + kk * 16 * 128;
  const uint32_t a = smem_u32(p);
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>((keys * 128) >> 4) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}
// Element offset of (row r, 16-byte chunk cc) in a swizzled tile of `rows` rows (for copies that are not TMA).
__device__ __forceinline__ int sw_offset(int rows, int r, int cc) {
  return (cc >> 3) * rows * 64 + r * 64 + (((cc & 7) ^ (r & 7)) << 3);
}
// One arrival on `bar` once every cp.async this thread issued before has landed.
__device__ __forceinline__ void mbar_arrive_copies(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

// Turns at the tensor cores of N consumer warpgroups that take the steps of one sequence round-robin (step i
// belongs to warpgroup i % N): the owner of step i issues its products only after the owner of step i - 1 has
// issued its own (named barrier base + w, 256 threads: the owner syncs, its predecessor arrives), so one
// warpgroup's exponentials run while the others' products occupy the tensor cores. N = 2 is FA3's ping-pong.
// No warpgroup can arrive twice on a barrier before its owner has synced once (its next step waits, through the
// ring of turns, for that owner's turn).
struct Turns {
  int next;  // barrier id of the warpgroup that owns the following step
  int mine;  // this warpgroup's barrier id
  __device__ __forceinline__ Turns(int base, int w, int n) : next(base + (w + 1) % n), mine(base + w) {}
  // Before issuing step i (the first step waits for nobody).
  __device__ __forceinline__ void begin(int i) const {
    if (i > 0) asm volatile("bar.sync %0, 256;\n" ::"r"(mine) : "memory");
  }
  // After issuing step i of `steps` (the last hands over to nobody).
  __device__ __forceinline__ void end(int i, int steps) const {
    if (i + 1 < steps) asm volatile("bar.arrive %0, 256;\n" ::"r"(next) : "memory");
  }
};

}  // namespace tma

// Host: cuTensorMapEncodeTiled from the driver, fetched once at run time (no link-time libcuda dependency).
PFN_cuTensorMapEncodeTiled_v12000 tma_encoder();
// A 3D map over [planes][rows valid of planeRows][128] 16-bit elements (row stride 256 B): boxes of 64 elements x
// boxRows rows x 1, 128-byte swizzle, rows at or past `rows` read as zeros. False when the driver has no encoder
// or rejects the map.
bool tma_encode(CUtensorMap* m, int dtype, const void* base, int rows, int planeRows, int planes, int boxRows);

}  // namespace pf
}  // namespace kascade
