// KASCADE_VARIANT_BURST_WRITES (cuda-anchor, session 9): the scores / layer-0 pass's f16 intermediate (the key-major
// u16 layout of select_plan.h) written in bursts that every SM shares in time.
//
// Session 8 measured that the intermediate's writes cost per unit of TIME during which they trickle into the read
// stream (the DRAM loses ~7 % of its read throughput while any arrive), not per byte: half the bytes written during the
// pass's first half cost half, the same half spread along the pass nearly all. Here each warp keeps the records of
// its 16-key steps (a step's GS x 16 u values, its GS step maxima m16 and the step's place in the intermediate) in its
// own shared-memory stage, and stores them only while the GPU-wide nanosecond clock (%globaltimer, the same on every
// SM) is inside a write window: the first 2^windowLog2 ns of every 2^periodLog2 ns. Every SM then writes in the same
// windows and reads alone in between. A stage that fills up before a window is stored at once (correct, slower); at
// the end of its work a warp waits for the next window (bounded) before storing what is left.
// Every value and every address is the one the direct stores write (the bytes are the same, only their timing moves).
#pragma once
#include <cuda_fp16.h>

#include "decode_device.cuh"  // smem_u32
#include "select_plan.h"      // u16_burst_step / u16_burst_slot: a record's place in the key-major intermediate

namespace kascade {

// One warp's stage: kRecords records of GS x 32 bytes of u, then their GS step maxima (f32), then their
// destinations (u16_burst_step: u at gstep GS 16 halves, m16 at gstep GS floats). UBYTES: the stage's byte budget (each
// record takes GS 36 + 8 bytes; the stage at most UBYTES + 16, from the pass's shared memory left over, see
// burst_u_bytes in decode_attention.cu).
template <int GS, int UBYTES>
struct BurstStage {
  static constexpr int kUBytes = GS * 32;
  static constexpr int kRecords = UBYTES / (GS * 36 + 8);
  static constexpr int kMOffset = kRecords * kUBytes;
  static constexpr int kDOffset = (kMOffset + kRecords * GS * 4 + 7) & ~7;
  static constexpr int kWarpBytes = (kDOffset + kRecords * 8 + 15) & ~15;
};

__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// The warp's common view of the clock (lane 0 reads it): inside a write window? groupsLog2 > 0 (tuning): the SMs in
// 2^groupsLog2 groups by SM id, each group's windows shifted by its share of the period (smaller bursts, more often).
__device__ __forceinline__ bool burst_window_open(int periodLog2, int windowLog2, int groupsLog2) {
  unsigned long long t = 0;
  if ((threadIdx.x & 31) == 0) {
    t = global_timer_ns();
    if (groupsLog2 > 0) {
      unsigned sm;
      asm("mov.u32 %0, %%smid;" : "=r"(sm));
      t += static_cast<unsigned long long>(sm & ((1u << groupsLog2) - 1u)) << (periodLog2 - groupsLog2);
    }
  }
  t = __shfl_sync(0xffffffffu, t, 0);
  return ((t >> windowLog2) & ((1ull << (periodLog2 - windowLog2)) - 1ull)) == 0ull;
}

// Record `slot` of the stage: this lane's share of the step's u (the lanes of the key-major store, see
// decode_attention.cu: row r < GS holds key nb * 8 + quad * 2 + (r & 1)'s pair of heads (r & ~1, r | 1), or at
// GS = 1 keys nb * 8 + quad * 2 + {0, 1} of head 0), the step maxima (quad 0 of each head row) and the destination.
template <int GS, int UBYTES>
__device__ __forceinline__ void burst_record(unsigned char* stage, int slot, int row, int quad, const unsigned* h2,
                                             float m16, unsigned long long gstep) {
  using B = BurstStage<GS, UBYTES>;
  if (row < GS) {
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
      const int key = nb * 8 + quad * 2 + (GS > 1 ? (row & 1) : 0);
      const int off = u16_burst_slot(key, GS > 1 ? (row & ~1) : 0, GS) * 2;
      *reinterpret_cast<unsigned*>(stage + slot * B::kUBytes + off) = h2[nb];
    }
    if (quad == 0) reinterpret_cast<float*>(stage + B::kMOffset)[slot * GS + row] = m16;
  }
  if ((threadIdx.x & 31) == 0) reinterpret_cast<unsigned long long*>(stage + B::kDOffset)[slot] = gstep;
}

// Asynchronous form (session 9, after call A: the warps' own stores stalled the whole GPU's read stream at each
// window): one TMA bulk copy shared -> global per record's u block (and its GS step maxima at GS >= 4: whole 16-byte
// pieces) issued by the record's lane; the warp goes on at once and waits only before it next writes the stage
// (burst_stage_ready). Smaller maxima (GS 1, 2) by plain stores.
__device__ __forceinline__ void bulk_s2g(void* gmem, const void* smem, unsigned bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(gmem), "r"(smem_u32(smem)),
               "r"(bytes)
               : "memory");
}
template <int GS, int UBYTES>
__device__ __forceinline__ void burst_store_async(const unsigned char* stage, int count, __half* u, float* m16) {
  using B = BurstStage<GS, UBYTES>;
  const int lane = threadIdx.x & 31;
  // The lanes' generic-proxy writes of the records, visible to the bulk copies' async proxy.
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncwarp();
  const unsigned long long* dst = reinterpret_cast<const unsigned long long*>(stage + B::kDOffset);
  const float* ms = reinterpret_cast<const float*>(stage + B::kMOffset);
  for (int r = lane; r < count; r += 32) {
    bulk_s2g(u + dst[r] * (GS * 16), stage + r * B::kUBytes, B::kUBytes);
    if constexpr (GS >= 4) bulk_s2g(m16 + dst[r] * GS, ms + r * GS, GS * 4);
  }
  if constexpr (GS < 4)
    for (int c = lane; c < count * GS; c += 32) {
      const int r = c / GS;
      __stcs(m16 + dst[r] * GS + (c - r * GS), ms[c]);
    }
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
// Before the warp writes its stage again: the bulk copies have read it.
__device__ __forceinline__ void burst_stage_ready() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
  __syncwarp();
}
// At the warp's end: its bulk copies are complete.
__device__ __forceinline__ void burst_stores_done() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// Stores the stage's first `count` records (all lanes; streaming stores, evict-first in L2: the select reads them
// once, after the pass) and leaves the stage free for the next records (the synchronous form, KASCADE_BURST's fourth
// field 1: call A's).
template <int GS, int UBYTES>
__device__ __forceinline__ void burst_store(const unsigned char* stage, int count, __half* u, float* m16) {
  using B = BurstStage<GS, UBYTES>;
  const int lane = threadIdx.x & 31;
  __syncwarp();
  const unsigned long long* dst = reinterpret_cast<const unsigned long long*>(stage + B::kDOffset);
  for (int c = lane; c < count * GS * 2; c += 32) {
    const int r = c / (GS * 2), ch = c - r * (GS * 2);
    const uint4 w = *reinterpret_cast<const uint4*>(stage + r * B::kUBytes + ch * 16);
    __stcs(reinterpret_cast<uint4*>(u + dst[r] * (GS * 16) + ch * 8), w);
  }
  const float* ms = reinterpret_cast<const float*>(stage + B::kMOffset);
  for (int c = lane; c < count * GS; c += 32) {
    const int r = c / GS;
    __stcs(m16 + dst[r] * GS + (c - r * GS), ms[c]);
  }
  __syncwarp();
}

// After a step's record: store the stage if a window is open or the stage is full (async: bulk copies in flight,
// *pending set). Returns the new count.
template <int GS, int UBYTES>
__device__ __forceinline__ int burst_after_step(const unsigned char* stage, int count, __half* u, float* m16,
                                                int periodLog2, int windowLog2, int groupsLog2, bool sync,
                                                bool* pending) {
  if (count < BurstStage<GS, UBYTES>::kRecords && !burst_window_open(periodLog2, windowLog2, groupsLog2)) return count;
  if (sync) {
    burst_store<GS, UBYTES>(stage, count, u, m16);
  } else {
    burst_store_async<GS, UBYTES>(stage, count, u, m16);
    *pending = true;
  }
  return 0;
}

// At the end of the warp's work: wait for the next window (at most ~4 periods of the SM clock, so a clock that does
// not move cannot hang the pass; `now`: no wait, tuning), then store what is left.
template <int GS, int UBYTES>
__device__ __forceinline__ void burst_drain(const unsigned char* stage, int count, __half* u, float* m16,
                                            int periodLog2, int windowLog2, int groupsLog2, bool now, bool sync) {
  if (count == 0) {
    if (!sync) burst_stores_done();
    return;
  }
  const long long c0 = clock64();
  const long long bound = 8ll << periodLog2;  // cycles: ~4 periods at 2 GHz
  // Lane 0 decides for the warp (the window's shuffle needs every lane).
  while (!now && !burst_window_open(periodLog2, windowLog2, groupsLog2) &&
         !__shfl_sync(0xffffffffu, clock64() - c0 >= bound, 0))
    __nanosleep(200);
  if (sync) {
    burst_store<GS, UBYTES>(stage, count, u, m16);
  } else {
    burst_store_async<GS, UBYTES>(stage, count, u, m16);
    burst_stores_done();
  }
}

}  // namespace kascade
