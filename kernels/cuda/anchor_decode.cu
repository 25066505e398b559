// Anchor decode ops: layer-0 dense anchor and the fused anchor, with the GPU radix Top-k.
//
// Pipeline (one sequence row = one (b, j) pair, kvHeads rows per sequence):
//  1. attn_partial_kernel (decode_attention.cu) in scores-only mode (anchor: reads K once) or
//     dense+logits mode (layer 0: the dense output too) writes the scaled logits
//     [batch, heads, n] f32 and each split's softmax max/sum.
//  2. pool_hist_kernel  grid (ceil(n/1024), rows), 256 threads: per head the global max/sum
//     from the splits, then S(x) = sum_h exp2(l_h(x) - M_h) / L_h (post-softmax, group-pooled)
//     -> pooled [rows, n] f32, and a 2048-bin histogram of the top 11 bits of S's bit pattern
//     (S >= 0, so the unsigned pattern orders like the value; sign + 8 exponent + 2 mantissa bits:
//     only the 1024 bins of the zero sign bit are used, 4 per octave; the cluster select's first
//     digit drops the sign for 8 per octave).
//  3. select step (run by the last block of each row to finish a histogram pass): finds the bin
//     holding rank k from the top (block scan over the histogram), narrows the prefix, keeps
//     the rank still wanted.
//  4. refine_hist_kernel: next 11 bits, then the last 10, of the elements matching the prefix
//     (steps 3-4 run for 3 digits: the threshold pattern is then exact).
//  5. compact_kernel: every element above the threshold (warp-aggregated atomics) and the
//     first `remaining` equal to it go to indices [rows, k]. Exactly k per row, no duplicates,
//     order free; among exactly tied scores at the threshold the pick is arbitrary.
//  6. anchor only: attn_partial_kernel in gather mode over the selected rows, then combine.
// Variant bits 256 / 512: steps 2-5 as one launch, a thread block cluster per row (select_decode.cu).
// Variant bit 2048 (1024: over the f16 intermediate): steps 2-5 as one cooperative launch (select_decode.cu).
// (Bit 64, the candidate-list passes, was removed in session 5: no default reached it.)
// Variant bit 8 (KASCADE_VARIANT_SELECT2): steps 2-5 take about 8 blocks per SM over all rows (chunks
// of up to 16 x 1024 scores per block: fewer histogram clears and flushes per score), and the scores
// pass zeroes the histogram and state rows instead of two memsets.
// Bytes (anchor): K once + logits written and read (4*H/G/(2*D) of K: 6% at g=4, d=128) +
// pooled scores written once and read 3 times (in L2 at batch 1) + the gathered K/V rows.
#include <cstdio>
#include <cstdlib>

#include "decode_attention.cuh"
#include "decode_device.cuh"
#include "select_common.cuh"
#include "select_decode.cuh"

namespace kascade {

__device__ void finish_row(int row, int level, int topk, unsigned* hist, int* state);

// The pooling passes' start: the block's histogram sh cleared, the softmax max and 1 / sum of the group's heads of
// row `row` in Mh / iL (ends with a CTA barrier); returns the row's first query-head row.
template <int GS>
__device__ __forceinline__ size_t pool_row_start(int row, int H, int G, int splits, const float* part_ml, unsigned* sh,
                                                 float* Mh, float* iL) {
  for (int i = threadIdx.x; i < kHistBins; i += blockDim.x) sh[i] = 0;
  const size_t bh0 = static_cast<size_t>(row / G) * H + static_cast<size_t>(row % G) * GS;
  head_softmax_stats<GS, 256>(part_ml + bh0 * splits * 2, splits, Mh, iL);  // ends with a CTA barrier
  return bh0;
}

// The block's histogram sh added to row `row`'s global one, then the row's digit step (all threads call it).
__device__ __forceinline__ void flush_hist_finish(int row, int level, int topk, const unsigned* sh, unsigned* hist,
                                                  int* state) {
  __syncthreads();
  for (int i = threadIdx.x; i < kHistBins; i += blockDim.x)
    if (sh[i]) atomicAdd(&hist[static_cast<size_t>(row) * kHistBins + i], sh[i]);
  finish_row(row, level, topk, hist, state);
}

template <int GS>
__global__ void __launch_bounds__(256) pool_hist_kernel(int n, int chunk, int H, int G, int splits, int topk, int* state,
                                                        const float* __restrict__ logits,
                                                        const float* __restrict__ part_ml,
                                                        float* __restrict__ pooled, unsigned* __restrict__ hist) {
  __shared__ unsigned sh[kHistBins];
  __shared__ float Mh[GS], iL[GS];
  const int row = blockIdx.y, tid = threadIdx.x;
  const size_t bh0 = pool_row_start<GS>(row, H, G, splits, part_ml, sh, Mh, iL);
  const int x0 = blockIdx.x * chunk, x1 = min(n, x0 + chunk);
  for (int base = x0; base < x1; base += blockDim.x) {
    const int x = base + tid;
    const bool in = x < x1;
    float S = 0.f;
    if (in) {
#pragma unroll
      for (int h = 0; h < GS; ++h) S += exp2f(logits[(bh0 + h) * n + x] - Mh[h]) * iL[h];
      if (pooled) pooled[static_cast<size_t>(row) * n + x] = S;
    }
    warp_hist_add(sh, __float_as_uint(S) >> 21, in);
  }
  if (hist) flush_hist_finish(row, 0, topk, sh, hist, state);  // hist: the same for the whole block
}

// KASCADE_VARIANT_U16: the same pooled scores and first-digit histogram from the f16 intermediate
// (u16 layout, select_plan.h; either order): each thread takes 4 consecutive keys (one 8-byte load of u per
// head, inside one 16-key step: one step-max coefficient per head), so a block covers 1024 keys a
// round (chunks are multiples of 1024).
template <int GS>
__global__ void __launch_bounds__(256) pool_hist_u16_kernel(int n, int chunk, int H, int G, int splits, int topk,
                                                            int* state, const void* __restrict__ inter,
                                                            const float* __restrict__ part_ml,
                                                            float* __restrict__ pooled, unsigned* __restrict__ hist,
                                                            int batch, int layout) {
  __shared__ unsigned sh[kHistBins];
  __shared__ float Mh[GS], iL[GS];
  const int row = blockIdx.y, tid = threadIdx.x;
  const size_t bh0 = pool_row_start<GS>(row, H, G, splits, part_ml, sh, Mh, iL);
  const int nU = u16_stride(n);
  const __half* u = static_cast<const __half*>(inter);
  const float* m16 = u16_m16(const_cast<void*>(inter), static_cast<size_t>(batch) * H, n);
  const int x0 = blockIdx.x * chunk, x1 = min(n, x0 + chunk);
  for (int base = x0; base < x1; base += 4 * blockDim.x) {
    const int x = base + 4 * tid;
    float S[4] = {0.f, 0.f, 0.f, 0.f};
    if (x < x1 && layout != kU16HeadMajor && GS > 1) {  // bit 1048576 (at GS = 1 both orders are the same)
      if constexpr (GS > 1) u16_key_major_pool<GS, 4>(u, m16, bh0, x, nU, layout, Mh, iL, S);
    } else if (x < x1) {
#pragma unroll
      for (int h = 0; h < GS; ++h) {
        const uint2 w = __ldcs(reinterpret_cast<const uint2*>(u + u16_index(bh0, h, x, nU, GS, false)));
        const float c = exp2f(__ldg(m16 + u16_m16_index(bh0, h, x, nU, GS, false)) - Mh[h] - kU16ScaleLog2) * iL[h];
        const float2 a0 = __half22float2(*reinterpret_cast<const __half2*>(&w.x));
        const float2 a1 = __half22float2(*reinterpret_cast<const __half2*>(&w.y));
        S[0] = fmaf(a0.x, c, S[0]);
        S[1] = fmaf(a0.y, c, S[1]);
        S[2] = fmaf(a1.x, c, S[2]);
        S[3] = fmaf(a1.y, c, S[3]);
      }
    }
    if (x < x1 && pooled) {
      float* pr = pooled + static_cast<size_t>(row) * n;
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (x + e < x1) pr[x + e] = S[e];
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) warp_hist_add(sh, __float_as_uint(S[e]) >> 21, x + e < x1);
  }
  if (hist) flush_hist_finish(row, 0, topk, sh, hist, state);  // hist: the same for the whole block
}

// The pooling pass (with the first digit's histogram when hist is set) over the scores pass's
// intermediate: f32 logits, or the f16 u of KASCADE_VARIANT_U16.
static cudaError_t launch_pool(const KascadeDecodeShape& s, int splits, const Workspace& w, int chunk, int topk,
                               float* pooled, unsigned* hist, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  const dim3 grid(ceil_div(s.n, chunk), s.batch * s.kvHeads);
  return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
    if (s.variant & KASCADE_VARIANT_U16) {
      pool_hist_u16_kernel<GS><<<grid, 256, 0, st>>>(s.n, chunk, s.heads, s.kvHeads, splits, topk, w.state, w.logits,
                                                     w.part_ml, pooled, hist, s.batch,
                                                     u16_layout_of(s.variant, GS));
    } else {
      pool_hist_kernel<GS><<<grid, 256, 0, st>>>(s.n, chunk, s.heads, s.kvHeads, splits, topk, w.state, w.logits,
                                                 w.part_ml, pooled, hist);
    }
    return cudaGetLastError();
  });
}

// state per row (kStateInts ints): [prefix, remaining rank, out count, tie count, blocks done]

// Finds the bin holding rank `remaining` from the top of row `row`'s histogram (a block scan),
// narrows the prefix, and clears the histogram for the next digit. Run by one 256-thread block.
__device__ void select_step(int row, int level, int topk, unsigned* __restrict__ hist, int* __restrict__ state) {
  const int tid = threadIdx.x;
  const int bits = level < 2 ? 11 : 10;
  unsigned* h = hist + static_cast<size_t>(row) * kHistBins;
  int* st = state + row * kStateInts;
  const unsigned krem = level == 0 ? static_cast<unsigned>(topk) : static_cast<unsigned>(st[1]);
  const unsigned prefix = level == 0 ? 0u : static_cast<unsigned>(st[0]);
  __shared__ unsigned wsum[8], res[2];
  select_rank_bin<256>([h](int bin) { return __ldcg(h + bin); }, 1 << bits, krem, wsum, res);
  if (tid == 0) {
    st[0] = static_cast<int>((prefix << bits) | res[0]);
    st[1] = static_cast<int>(res[1]);
  }
  for (int i = tid; i < kHistBins; i += blockDim.x) h[i] = 0;
  if (level == 2 && tid == 0) {
    st[2] = 0;
    st[3] = 0;
  }
}

// Called by every block of a histogram pass after it flushed its counts: the last block of
// the row to finish runs the select step (saves a launch per digit).
__device__ void finish_row(int row, int level, int topk, unsigned* hist, int* state) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* done = state + row * kStateInts + 4;
    last = atomicAdd(done, 1) == static_cast<int>(gridDim.x) - 1;
    if (last) *done = 0;
  }
  __syncthreads();
  if (last) {
    __threadfence();
    select_step(row, level, topk, hist, state);
  }
}

__global__ void __launch_bounds__(256) refine_hist_kernel(int level, int n, int chunk, int topk, const float* __restrict__ pooled,
                                                          int* __restrict__ state, unsigned* __restrict__ hist) {
  __shared__ unsigned sh[kHistBins];
  const int row = blockIdx.y, tid = threadIdx.x;
  for (int i = tid; i < kHistBins; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  const unsigned prefix = static_cast<unsigned>(state[row * kStateInts]);
  const int x0 = blockIdx.x * chunk, x1 = min(n, x0 + chunk);
  const float* pr = pooled + static_cast<size_t>(row) * n;
  for (int base = x0; base < x1; base += blockDim.x) {
    const int x = base + tid;
    const unsigned u = x < x1 ? __float_as_uint(pr[x]) : 0u;
    if (level == 1) {
      warp_hist_add(sh, (u >> 10) & 0x7ffu, x < x1 && (u >> 21) == prefix);
    } else {
      warp_hist_add(sh, u & 0x3ffu, x < x1 && (u >> 10) == prefix);
    }
  }
  flush_hist_finish(row, level, topk, sh, hist, state);
}

__global__ void __launch_bounds__(256) compact_kernel(int n, int chunk, int topk, const float* __restrict__ pooled,
                                                      int* __restrict__ state, int* __restrict__ out) {
  constexpr int kPer = kSelectChunk / 256;
  __shared__ int warpBase[8];
  __shared__ int blockBase;
  const int row = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int* st = state + row * kStateInts;
  const unsigned thr = static_cast<unsigned>(st[0]);
  const int krem = st[1];
  const float* pr = pooled + static_cast<size_t>(row) * n;
  // The block's chunk, 1024 scores (kSelectChunk) at a time.
  const int xEnd = min(n, blockIdx.x * chunk + chunk);
  for (int x0 = blockIdx.x * chunk; x0 < xEnd; x0 += kSelectChunk) {
    const int x1 = min(xEnd, x0 + kSelectChunk);
    int* o = out + static_cast<size_t>(row) * topk;
    // Elements strictly above the threshold: one atomic per block reserves their slots.
    unsigned u[kPer];
    int cnt = 0;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int x = x0 + i * 256 + tid;
      u[i] = x < x1 ? __float_as_uint(pr[x]) : 0u;
      cnt += (x < x1 && u[i] > thr) ? 1 : 0;
    }
    const int inc = warp_inclusive_sum(cnt);
    if (lane == 31) warpBase[warp] = inc;
    __syncthreads();
    if (tid == 0) {
      int total = 0;
      for (int w = 0; w < 8; ++w) {
        const int c = warpBase[w];
        warpBase[w] = total;
        total += c;
      }
      blockBase = total > 0 ? atomicAdd(&st[2], total) : 0;
    }
    __syncthreads();
    int slot = blockBase + warpBase[warp] + inc - cnt;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int x = x0 + i * 256 + tid;
      if (x < x1 && u[i] > thr) o[slot++] = x;
    }
    // Exact ties with the threshold (rare): the first `krem` to arrive are taken.
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int x = x0 + i * 256 + tid;
      if (x < x1 && u[i] == thr && atomicAdd(&st[3], 1) < krem) o[atomicAdd(&st[2], 1)] = x;
    }
    __syncthreads();  // warpBase / blockBase are reused by the next 1024 scores
  }
}

// Scores per block in the Top-k passes: kSelectChunk, or with KASCADE_VARIANT_SELECT2 about 8 blocks
// per SM over all rows (a multiple of kSelectChunk, at most 16 of them): fewer 2048-bin histogram
// clears and flushes per score.
static int select_chunk(const KascadeDecodeShape& s) {
  if (!(s.variant & KASCADE_VARIANT_SELECT2)) return kSelectChunk;
  const long long total = static_cast<long long>(s.n) * s.batch * s.kvHeads;
  const int per = ceil_div(ceil_div(total, 8LL * device_sm_count()), kSelectChunk);
  return kSelectChunk * max(1, min(16, per));
}

// Clears the histogram and state rows for the passes below, unless the scores pass did (SELECT2).
static cudaError_t pooled_topk(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk,
                               int* indices, const void* q, const void* k, cudaStream_t st) {
  const int rows = s.batch * s.kvHeads;
  const int chunk = select_chunk(s);
  const dim3 grid(ceil_div(s.n, chunk), rows);
  cudaError_t e = cudaSuccess;
  // The stream select as in call A (4db2959, parity 4000/4000): calls A2/A3 ran a reworked version that
  // failed parity and was reverted.
  // KASCADE_VARIANT_SELECT_B1 (cuda-b1, select_b1_decode.cu): one cooperative launch over the f32 logits.
  if ((s.variant & KASCADE_VARIANT_SELECT_B1) && !(s.variant & KASCADE_VARIANT_U16))
    return b1_select(s, splits, w, topk, indices, st);
  if (s.variant & KASCADE_VARIANT_STREAM_SELECT) return stream_select(s, splits, w, topk, indices, q, k, st);
  if (s.variant & (kVariantSelectCluster | kVariantSelectV2)) {
    // One launch (select_decode.cu); the passes below only if the device cannot place its clusters.
    e = cluster_select(s, splits, w, topk, indices, st);
    if (e != cudaErrorNotSupported) return e;
  }
  if (!(s.variant & KASCADE_VARIANT_SELECT2)) {
    e = cudaMemsetAsync(w.hist, 0, sizeof(unsigned) * kHistBins * rows, st);
    if (e == cudaSuccess) e = cudaMemsetAsync(w.state, 0, sizeof(int) * kStateInts * rows, st);
    if (e != cudaSuccess) return e;
  }
  e = launch_pool(s, splits, w, chunk, topk, w.pooled, w.hist, st);
  if (e != cudaSuccess) return e;
  for (int level = 1; level < 3; ++level) {
    refine_hist_kernel<<<grid, 256, 0, st>>>(level, s.n, chunk, topk, w.pooled, w.state, w.hist);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  compact_kernel<<<grid, 256, 0, st>>>(s.n, chunk, topk, w.pooled, w.state, indices);
  return cudaGetLastError();
}

}  // namespace kascade

using namespace kascade;

// Diagnosis only: KASCADE_DEBUG_NO_LOGIT_WRITES=1, 2, 3, 6 or 7 (PartialArgs::writeProbe) changes the scores / layer-0
// pass's intermediate writes, so a profile can time the pass without them (1), with u computed but not stored (2),
// without m16 (3), or (session 8) with only half the CTAs storing: those of the batch's first half, which run first
// (6), or the even splits, all along the pass (7). (Session 8's probes 4 and 5, the default L2 policy and stores
// folded into a few MB, changed nothing and were removed.) They make the selection WRONG; the profile job sets them
// only in its ncu runs, never for parity or the bench.
static int debug_write_probe() {
  static const int mode = [] {
    const char* e = std::getenv("KASCADE_DEBUG_NO_LOGIT_WRITES");
    const bool known = e && e[1] == 0 && ((e[0] >= '1' && e[0] <= '3') || e[0] == '6' || e[0] == '7');
    return known ? e[0] - '0' : 0;
  }();
  return mode;
}

// KASCADE_VARIANT_BURST_WRITES: the write windows, 2^windowLog2 ns every 2^periodLog2 ns. Defaults per pass (layer 0
// produces its intermediate at half the scores pass's rate: twice the period for the same stage fill); tuning:
// KASCADE_BURST=<periodLog2>,<windowLog2>[,<drainNow>[,<sync>[,<groupsLog2>]]] for both passes (periodLog2 10..24,
// windowLog2 6..periodLog2 - 1; drainNow 1: each warp stores what is left at its end at once instead of waiting for a
// window; sync 1: the warps' own stores, call A's form, instead of TMA bulk copies; groupsLog2 0..4: the SMs in 2^g
// groups by SM id with windows shifted by 1 / 2^g period each).
struct BurstWindow {
  int periodLog2;
  int windowLog2;
  int drainNow;
  int sync;
  int groupsLog2;
};
static BurstWindow burst_window(bool layer0) {
  static const BurstWindow forced = [] {
    const char* e = std::getenv("KASCADE_BURST");
    int p = 0, w = 0, d = 0, y = 0, g = 0;
    if (e && std::sscanf(e, "%d,%d,%d,%d,%d", &p, &w, &d, &y, &g) >= 2 && p >= 10 && p <= 24 && w >= 6 && w < p &&
        g >= 0 && g <= 4 && p - g > w)
      return BurstWindow{p, w, d == 1 ? 1 : 0, y == 1 ? 1 : 0, g};
    return BurstWindow{0, 0, 0, 0, 0};
  }();
  if (forced.periodLog2 > 0) return forced;
  return layer0 ? BurstWindow{15, 12, 0, 0, 0} : BurstWindow{14, 11, 0, 0, 0};
}
// The pass's write windows when KASCADE_VARIANT_BURST_WRITES applies: with the f16 intermediate in key-major order (the
// same as head-major at g 1).
static void set_burst_window(const KascadeDecodeShape& s, bool layer0, PartialArgs& a) {
  const bool keyMajor = (s.variant & KASCADE_VARIANT_U16_KEY_MAJOR) || s.heads == s.kvHeads;
  if (!(s.variant & KASCADE_VARIANT_BURST_WRITES) || !(s.variant & KASCADE_VARIANT_U16) || !keyMajor) return;
  const BurstWindow bw = burst_window(layer0);
  a.burstPeriodLog2 = bw.periodLog2;
  a.burstWindowLog2 = bw.windowLog2;
  // The lean schedule's CTAs all end with the pass: their last records go out together, no window to wait for.
  a.burstDrainNow = (bw.drainNow || (s.variant & KASCADE_VARIANT_LEAN)) ? 1 : 0;
  a.burstSync = bw.sync;
  a.burstGroupsLog2 = bw.groupsLog2;
}

// KASCADE_VARIANT_U16's intermediate is read only by the stream select (its exact window recompute makes
// the f16 rounding harmless): the shape the anchors run with sets bit 2048 with bit 1024.
static KascadeDecodeShape anchor_shape(const KascadeDecodeShape* s) {
  KascadeDecodeShape r = *s;
  if (r.variant & KASCADE_VARIANT_U16) r.variant |= KASCADE_VARIANT_STREAM_SELECT;
  return r;
}

static cudaError_t check_anchor_args(const KascadeDecodeShape* s, int topk, size_t wsBytes,
                                     const Workspace& w) {
  const cudaError_t e = kascade_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  if (topk < 1 || topk > s->n) return cudaErrorInvalidValue;
  if (wsBytes < w.bytes) return cudaErrorInvalidValue;
  return cudaSuccess;
}

// The device pointers of one anchor op call.
struct AnchorCall {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int* indices;
};

// Stage 1 of an anchor op over the batch of s: the scores pass (anchor: reads K once) or the dense pass with
// the logits (layer 0: writes out). Sets *splits (the select reads the per-split softmax statistics).
static cudaError_t anchor_pass(const KascadeDecodeShape& s, bool layer0, const AnchorCall& c, const Workspace& w,
                               int* splits, cudaStream_t st) {
  PartialArgs a{};
  a.q = c.q;
  a.k = c.k;
  a.v = c.v;
  a.logits = w.logits;
  a.part_o = w.part_o;
  a.part_ml = w.part_ml;
  a.splits = attn_splits(s, s.n, &a.chunk, false);
  a.writeProbe = debug_write_probe();
  set_burst_window(s, layer0, a);
  if (s.variant & KASCADE_VARIANT_SELECT2) {
    // The scores pass zeroes the multi-pass select's histogram and state rows (the stream select clears its own).
    a.clearHist = w.hist;
    a.clearState = w.state;
  }
  const cudaError_t e = launch_attention(s, layer0 ? kDenseLogits : kScoresOnly, a, layer0 ? c.out : nullptr, st);
  *splits = a.splits;  // after the launch: the lean schedule (bit 128) sets it to its partial slots per row
  return e;
}

// Stage 2: the Top-k select from stage 1's logits, and for the anchor the sparse pass over the selected keys.
static cudaError_t anchor_finish(const KascadeDecodeShape& s, bool layer0, const AnchorCall& c, int topk,
                                 const Workspace& w, int splits, cudaStream_t st) {
  // KASCADE_VARIANT_B1_EARLY_SPARSE (cuda-b1, session 10): with the b1 select and the ws gather, the select publishes
  // each row's ready count and the sparse pass reads the list as it is written (reuse_b1_decode.cu).
  const bool early = !layer0 && (s.variant & KASCADE_VARIANT_B1_EARLY_SPARSE) &&
                     (s.variant & KASCADE_VARIANT_SELECT_B1) && !(s.variant & KASCADE_VARIANT_U16) &&
                     (s.variant & KASCADE_VARIANT_GATHER_WS);
  cudaError_t e = early ? b1_select(s, splits, w, topk, c.indices, st, true)
                        : pooled_topk(s, splits, w, topk, c.indices, c.q, c.k, st);
  if (e != cudaSuccess || layer0) return e;
  PartialArgs g{};
  g.q = c.q;
  g.k = c.k;
  g.v = c.v;
  g.indices = c.indices;
  g.topk = topk;
  g.selKvHeads = s.kvHeads;
  for (int j = 0; j < s.kvHeads; ++j) g.headMap[j] = j;
  g.part_o = w.part_o;
  g.part_ml = w.part_ml;
  // The b1 select (bit 131072, not with 1024) leaves the scores pass's f32 logits intact: the ws gather (bit 32768)
  // takes the scores from them and copies only V rows (reuse_b1_decode.cu, logits mode). Not with bit 8388608
  // (b1_l2.cuh, cuda-b1): the select drops the logits from L2 once read, so the sparse pass copies K rows.
  if ((s.variant & KASCADE_VARIANT_SELECT_B1) && !(s.variant & KASCADE_VARIANT_U16) &&
      !(s.variant & KASCADE_VARIANT_B1_L2_LOGITS))
    g.logits = w.logits;
  // KASCADE_VARIANT_SPARSE_U16 (with 1024): the scores from the f16 intermediate, V rows only (anchor_sparse_decode.cu).
  if ((s.variant & KASCADE_VARIANT_SPARSE_U16) && (s.variant & KASCADE_VARIANT_U16)) {
    g.logits = w.logits;
    // KASCADE_VARIANT_U16_EARLY_SPARSE (cuda-anchor, session 10): beside the stream select's phase 4 (its ready counts).
    if (s.variant & KASCADE_VARIANT_U16_EARLY_SPARSE) g.early = w.state;
    return launch_u16_sparse(s, g, c.out, st);
  }
  if (early) g.early = w.state;
  g.splits = attn_splits(s, topk, &g.chunk, true);
  return launch_attention(s, kGather, g, c.out, st);
}

size_t kascade::anchor_workspace_bytes(const KascadeDecodeShape& caller, int topk) {
  const KascadeDecodeShape s = anchor_shape(&caller);
  return workspace_layout(s, topk, nullptr, true).bytes;
}

// Both anchor ops: the pass, then the select (+ the anchor's sparse pass), on st.
static cudaError_t anchor_run(const KascadeDecodeShape* shape, bool layer0, const AnchorCall& call, int topk,
                              void* workspace, size_t wsBytes, cudaStream_t st) {
  const KascadeDecodeShape s = anchor_shape(shape);
  const Workspace w = workspace_layout(s, topk, workspace, true);
  cudaError_t e = check_anchor_args(&s, topk, wsBytes, w);
  if (e != cudaSuccess) return e;
  int splits = 0;
  if ((e = anchor_pass(s, layer0, call, w, &splits, st)) != cudaSuccess) return e;
  return anchor_finish(s, layer0, call, topk, w, splits, st);
}

extern "C" cudaError_t kascade_dense_anchor_decode(const KascadeDecodeShape* shape, const void* q, const void* k,
                                                   const void* v, void* out, int topk, int* indices,
                                                   void* workspace, size_t wsBytes, cudaStream_t st) {
  return anchor_run(shape, true, AnchorCall{q, k, v, out, indices}, topk, workspace, wsBytes, st);
}

extern "C" cudaError_t kascade_anchor_decode(const KascadeDecodeShape* shape, const void* q, const void* k,
                                             const void* v, void* out, int topk, int* indices,
                                             void* workspace, size_t wsBytes, cudaStream_t st) {
  return anchor_run(shape, false, AnchorCall{q, k, v, out, indices}, topk, workspace, wsBytes, st);
}

extern "C" cudaError_t kascade_pooled_scores(const KascadeDecodeShape* shape, const void* q, const void* k,
                                             float* pooled, void* workspace, size_t wsBytes, cudaStream_t st) {
  const KascadeDecodeShape shapeRun = anchor_shape(shape);
  const KascadeDecodeShape* s = &shapeRun;
  Workspace w = workspace_layout(*s, 1, workspace, true);
  cudaError_t e = check_anchor_args(s, 1, wsBytes, w);
  if (e != cudaSuccess) return e;
  PartialArgs a{};
  a.q = q;
  a.k = k;
  a.v = k;
  a.logits = w.logits;
  a.part_o = w.part_o;
  a.part_ml = w.part_ml;
  a.splits = attn_splits(*s, s->n, &a.chunk, false);
  set_burst_window(*s, false, a);
  if ((e = launch_attention(*s, kScoresOnly, a, nullptr, st)) != cudaSuccess) return e;
  return launch_pool(*s, a.splits, w, kSelectChunk, 1, pooled, nullptr, st);
}
