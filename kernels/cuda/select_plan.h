// Host-side plan of the cluster Top-k select (select_decode.cu, variant bits 256 and 512): how many
// CTAs share one pooled-score row (one thread block cluster per row), how many scores each CTA
// holds, and whether they fit in its shared memory. Pure C++ (no CUDA), so a CPU test can compile it
// (packages/cuda/src/select-plan.test.ts).
#pragma once
#include <cstddef>
#include <cstdlib>

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

// ---------------------------------------------------------------------------------------------------
// Variant bits 1024 / 2048 (the stream select, select_decode.cu): host and device helpers.
#if defined(__CUDACC__)
#define KASCADE_HD __host__ __device__
#else
#define KASCADE_HD
#endif

// KASCADE_VARIANT_U16: the anchors' intermediate, in the workspace's logits buffer. Per query-head row
// (b * heads + h): u[x] = 2^15 exp2(l(x) - m16(x / 16)) as f16 over a row of u16_stride(n) entries (n rounded
// up to 16: 16-byte aligned rows for 8-key loads), where m16(t) is the max of the row's log2-domain
// logits over keys [16 t, 16 t + 16) (one f32 per 16-key step), all m16 rows after all u rows. The
// pooled score is then S(x) = 2^-15 sum_h u_h(x) exp2(m16_h(x / 16) - M_h) / L_h. The 2^15 scale keeps u
// normal (relative rounding <= 2^-11) down to 2^-29 of its step's max; below, f16's absolute step 2^-24
// (2^-39 unscaled, half of it in rounding) applies.
constexpr float kU16ScaleLog2 = 15.f;
KASCADE_HD inline int u16_stride(int n) { return (n + 15) & ~15; }
// The intermediate's orders (`layout` below): 0 head-major, 1 key-major (bit 1048576, next comment); at GS 1 both are
// the same (u16_layout gives 0). (Session 10: a third order, each step's maxima inside its u block (bit 16777216, "step
// blocks"), lost in call A and was removed: packages/cuda/README.md.)
constexpr int kU16HeadMajor = 0, kU16KeyMajor = 1;
KASCADE_HD inline int u16_layout(bool keyMajor, int GS) { return GS > 1 && keyMajor ? kU16KeyMajor : kU16HeadMajor; }
// Byte offset of the m16 rows (rows = batch x heads).
KASCADE_HD inline size_t u16_m16_offset(size_t rows, int n) { return rows * static_cast<size_t>(u16_stride(n)) * 2; }
// Bytes of u and m16 together.
KASCADE_HD inline size_t u16_bytes(size_t rows, int n) {
  return u16_m16_offset(rows, n) + rows * static_cast<size_t>(u16_stride(n) / 16) * 4;
}
// KASCADE_VARIANT_U16_KEY_MAJOR (cuda-anchor, session 8): the same bytes in key-major order. Per (sequence, KV head)
// row (its GS query-head rows start at bh0 = (b * kvHeads + j) * GS), each 16-key step is one block of GS x 16 u
// values, key by key, the GS heads' values of a key side by side (GS x 2 bytes), and m16 holds the step's GS maxima
// side by side (GS floats). A warp step of the scores / layer-0 pass then writes whole 128-byte lines (GS = 4) of
// one contiguous stream per CTA, where the head-major order puts its GS 32-byte sectors into GS rows nU x 2 bytes
// apart; the anchor's sparse pass reads a selected key's GS values with one copy (and its GS step maxima with
// another) instead of 2 GS.
// Element index of u for query head bh0 + h at key x (x < nU), in either layout (0 / false head-major, 1 / true
// key-major):
KASCADE_HD inline size_t u16_index(size_t bh0, int h, int x, int nU, int GS, int layout) {
  return layout ? bh0 * static_cast<size_t>(nU) + static_cast<size_t>(x >> 4) * (GS * 16) + (x & 15) * GS + h
                : (bh0 + h) * static_cast<size_t>(nU) + x;
}
// Index of m16 (the step max of key x's 16-key step) for query head bh0 + h, in either layout, from u16_m16 (the m16
// rows).
KASCADE_HD inline size_t u16_m16_index(size_t bh0, int h, int x, int nU, int GS, int layout) {
  return layout ? bh0 * static_cast<size_t>(nU / 16) + static_cast<size_t>(x >> 4) * GS + h
                : (bh0 + h) * static_cast<size_t>(nU / 16) + (x >> 4);
}
// KASCADE_VARIANT_BURST_WRITES (cuda-anchor, session 9; burst_writes.cuh): a pass's 16-key step is staged as one record
// and stored later, so it carries its place: the step index gstep of key x of (sequence, KV head) row kvRow (its query
// heads start at bh0 = kvRow GS). Key-major, the step's u block starts at element gstep GS 16 and its GS maxima at
// gstep GS; key e of the step, head h, sits at e GS + h of the block.
KASCADE_HD inline unsigned long long u16_burst_step(size_t kvRow, int x, int nU) {
  return static_cast<unsigned long long>(kvRow) * static_cast<unsigned long long>(nU / 16) + static_cast<unsigned>(x >> 4);
}
KASCADE_HD inline int u16_burst_slot(int e, int h, int GS) { return e * GS + h; }

// KASCADE_VARIANT_SPARSE_U16: the stream select's list (keys, then their scores) starts here, past u and m16
// (256-byte aligned), so the anchor's sparse pass still finds the intermediate after the select.
KASCADE_HD inline size_t u16_list_offset(size_t rows, int n) { return (u16_bytes(rows, n) + 255) & ~static_cast<size_t>(255); }

// The stream select's schedule: each (sequence, KV head) row cut into kStreamTile-key tiles, rows laid
// end to end (work tiles in all), CTA c of `ctas` taking tiles [c work / ctas, (c + 1) work / ctas):
// the resident grid (perSm x sms), but at least two tiles per CTA (each row segment a CTA touches
// clears and flushes a 4096-bin histogram) and never more CTAs than tiles.
constexpr int kStreamTile = 2048;  // keys per tile: 8 per thread of 256
struct StreamPlan {
  int tiles;       // tiles per row
  long long work;  // tiles in all
  int ctas;        // grid size
};
inline StreamPlan stream_plan(long long rows, int n, int perSm, int sms) {
  StreamPlan p{};
  p.tiles = static_cast<int>(select_ceil_div(n < 1 ? 1 : n, kStreamTile));
  p.work = (rows < 1 ? 1 : rows) * p.tiles;
  long long want = static_cast<long long>(perSm < 1 ? 1 : perSm) * (sms < 1 ? 1 : sms);
  const long long half = p.work / 2 > 0 ? p.work / 2 : 1;
  if (want > half) want = half;
  p.ctas = static_cast<int>(want);
  return p;
}
// Bit 1024's exact window: keys whose pooled score S' from the f16 intermediate lies within
// [a (1 - W) - A, a (1 + W) + A] of the listed k-th score a are recomputed exactly. Per head, f16
// rounds u within 2^-11 relative (normal range) or 2^-40 absolute (unscaled; the head's weight
// exp2(m16 - M) / L is at most 1), so |S' - S| <= 2^-11 S + g 2^-40 for g heads. W = 2^-9 and
// A = g 2^-38 are more than twice that: every key whose order against the k-th score could have
// flipped is inside (keys above the window are in the exact Top-k, keys below it out).
constexpr float kStreamWindow = 0.001953125f;           // W = 2^-9
constexpr float kStreamWindowAbsPerHead = 3.637979e-12f;  // 2^-38

}  // namespace kascade
