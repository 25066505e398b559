// Host-side plan of the cluster Top-k select (select_decode.cu, variant bits 256 and 512): how many
// CTAs share one pooled-score row (one thread block cluster per row), how many scores each CTA
// holds, and whether they fit in its shared memory. Pure C++ (no CUDA), so a CPU test can compile it
// (packages/cuda/src/select-plan.test.ts).
#pragma once
#include <cstddef>

namespace kascade {

constexpr int kSelectThreads = 512;                   // threads per CTA of the cluster select
constexpr int kSelectWarps = kSelectThreads / 32;     // each warp owns a contiguous run of the slice
constexpr int kSelectSliceAlign = kSelectWarps * 128; // slices are whole float4 steps for every warp
constexpr int kSelectBins = 2048;                     // 11-bit digits (11 + 11 + 9 bits of the key)
// Shared memory besides the slice: the CTA's histogram and the cluster's three digit histograms.
constexpr size_t kSelectFixedSmem = sizeof(unsigned) * 4 * kSelectBins;

struct SelectPlan {
  int cluster;       // CTAs per row (thread block cluster size)
  int slice;         // scores per CTA (a multiple of kSelectSliceAlign); CTA r covers [r*slice, (r+1)*slice) ∩ [0, n)
  bool inSmem;       // the slice's pooled scores live in shared memory (else in the workspace's pooled row)
  size_t smemBytes;  // dynamic shared memory per CTA
};

struct SelectLimits {
  int maxCluster;   // 8 (portable) or 16 (non-portable, Hopper)
  int sliceTarget;  // preferred scores per CTA (smaller: more CTAs per row and per SM)
  int sliceMax;     // most scores per CTA kept in shared memory
};

// Plain (both versions, bits 256 and 512): clusters of up to 8, 16384 scores per CTA (96 KB: two CTAs
// per SM). Wide: clusters of up to 16, 8192 per CTA; bit 512 ran it in call B of the third session,
// 1.2-2.6x slower than the plain plan, so no variant uses it now.
inline SelectLimits select_limits(bool wide) {
  return wide ? SelectLimits{16, 8192, 40960} : SelectLimits{8, 16384, 40960};
}

inline long long select_ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// n scores per row, rows = batch x kvHeads, sms = the device's multiprocessor count.
// Cluster size: enough CTAs that a row's slices fit sliceTarget, and at least ~2 CTAs per SM over
// all rows (small batches), but never more than maxCluster nor CTAs with nothing to do. Slices are
// whole multiples of kSelectSliceAlign, rounded down (more CTAs) unless that passes maxCluster.
inline SelectPlan select_plan(long long n, long long rows, int sms, const SelectLimits& lim) {
  if (n < 1) n = 1;
  if (rows < 1) rows = 1;
  long long want = select_ceil_div(n, lim.sliceTarget);
  const long long par = select_ceil_div(2LL * (sms > 0 ? sms : 1), rows);
  if (par > want) want = par;
  if (want > lim.maxCluster) want = lim.maxCluster;
  if (want < 1) want = 1;
  long long slice = select_ceil_div(n, want) / kSelectSliceAlign * kSelectSliceAlign;
  if (slice < kSelectSliceAlign) slice = kSelectSliceAlign;
  if (select_ceil_div(n, slice) > lim.maxCluster)
    slice = select_ceil_div(select_ceil_div(n, lim.maxCluster), kSelectSliceAlign) * kSelectSliceAlign;
  SelectPlan p{};
  p.cluster = static_cast<int>(select_ceil_div(n, slice));  // every CTA gets at least one score
  p.slice = static_cast<int>(slice);
  p.inSmem = slice <= lim.sliceMax;
  p.smemBytes = kSelectFixedSmem + (p.inSmem ? sizeof(float) * static_cast<size_t>(slice) : 0);
  return p;
}

}  // namespace kascade
