// The anchors' exact Top-k of a pooled row, variant v2 (pool variants v7 / v8 in prefill_anchor.cu): the
// radix select of select_prefill_kernel (prefill_anchor.cu) reading the row twice instead of four times.
//
// select_prefill_v2_kernel: grid (tiles, pairs in this pass), 256 threads, one block per pooled row of s_t
// scores (>= 0, so their f32 bit patterns order like the values), k = counts[t] of them selected.
//   Pass 0 (reads the row): the histogram of the top 11 bits; the bin b0 holding the k-th largest and the
//   rank krem within it, as in v1.
//   If b0 holds at most kCap scores (known from the histogram), pass 1 (reads the row again, in index order,
//   256 scores at a time): scores above b0 are selected at once; the scores in b0 are appended to a
//   shared-memory candidate list in index order (a ballot scan per chunk). The remaining two radix levels
//   (11 + 10 bits) and the tie rule (among scores equal to the k-th largest, lower index first) then run on
//   the candidates only. Otherwise the block finishes as v1 does (two more histogram passes and a compaction
//   pass over the row).
// Output as v1: the k indices in indices[pair, t, 0 .. k) (order free), -1 in the unused entries.
#include "prefill_attention.cuh"

namespace kascade {
namespace pf {

namespace {

constexpr int kCap = 2048;  // candidates held in shared memory

// Shared-memory histogram add aggregated over the lanes of a warp that hit the same bin. All lanes call.
__device__ __forceinline__ void hist_add_agg2(unsigned* sh, unsigned bin, bool active) {
  const unsigned act = __ballot_sync(0xffffffffu, active);
  if (!active) return;
  const unsigned peers = __match_any_sync(act, bin);
  if ((threadIdx.x & 31) == static_cast<unsigned>(__ffs(peers) - 1)) atomicAdd(&sh[bin], __popc(peers));
}

// After a histogram of nbins bins: the bin holding the krem-th largest (counting from the top) and the rank
// left inside it, to *selBin / *selKrem (shared). Block-wide; 256 threads.
__device__ __forceinline__ void find_bin(const unsigned* hist, int nbins, unsigned krem, unsigned* wsum,
                                         unsigned* selBin, unsigned* selKrem) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int per = nbins / 256;
  unsigned cnt = 0;
  for (int e = 0; e < per; ++e) cnt += hist[nbins - 1 - (tid * per + e)];
  unsigned inc = cnt;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned y = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += y;
  }
  if (lane == 31) wsum[warp] = inc;
  __syncthreads();
  unsigned before = inc - cnt;
  for (int w = 0; w < warp; ++w) before += wsum[w];
  if (before < krem && before + cnt >= krem) {
    unsigned cum = before;
    for (int e = 0; e < per; ++e) {
      const int bin = nbins - 1 - (tid * per + e);
      const unsigned c = hist[bin];
      if (cum + c >= krem) {
        *selBin = static_cast<unsigned>(bin);
        *selKrem = krem - cum;
        break;
      }
      cum += c;
    }
  }
  __syncthreads();
}

__global__ void __launch_bounds__(256) select_prefill_v2_kernel(KascadePrefillShape s, const float* __restrict__ pooled,
                                                                int pairBase, size_t perPair,
                                                                const int* __restrict__ counts, int kMax,
                                                                int* __restrict__ indices) {
  __shared__ unsigned hist[2048];
  __shared__ unsigned candV[kCap];
  __shared__ int candI[kCap];
  __shared__ unsigned wsum[8];
  __shared__ unsigned selBin, selKrem;
  __shared__ int cntGt;
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y;
  const int st = s.queryStart + t * kT;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int k = min(max(__ldg(counts + t), 0), min(st, kMax));
  int* out = indices + (static_cast<size_t>(pair) * tiles + t) * kMax;
  for (int i = k + tid; i < kMax; i += blockDim.x) out[i] = -1;
  if (k == 0) return;
  if (k == st) {  // early tiles: every earlier key
    for (int i = tid; i < st; i += blockDim.x) out[i] = i;
    return;
  }
  const unsigned* u =
      reinterpret_cast<const unsigned*>(pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t));
  const unsigned ltMask = (1u << lane) - 1u;

  // Pass 0: top 11 bits.
  for (int i = tid; i < 2048; i += blockDim.x) hist[i] = 0;
  if (tid == 0) cntGt = 0;
  __syncthreads();
  for (int base = 0; base < st; base += blockDim.x) {
    const int x = base + tid;
    const unsigned v = x < st ? u[x] : 0u;
    hist_add_agg2(hist, v >> 21, x < st);
  }
  __syncthreads();
  find_bin(hist, 2048, static_cast<unsigned>(k), wsum, &selBin, &selKrem);
  const unsigned b0 = selBin, krem0 = selKrem;
  const unsigned cand = hist[b0];
  __syncthreads();

  unsigned prefix = b0 << 21, mask = 0x7FFu << 21, krem = krem0;
  if (cand <= static_cast<unsigned>(kCap)) {
    // Pass 1: scores above b0 are in; b0's scores become candidates, in index order.
    unsigned cbase = 0;
    for (int base = 0; base < st; base += blockDim.x) {
      const int x = base + tid;
      const unsigned v = x < st ? u[x] : 0u;
      const unsigned top = v >> 21;
      if (x < st && top > b0) out[atomicAdd(&cntGt, 1)] = x;
      const bool eq = x < st && top == b0;
      const unsigned bal = __ballot_sync(0xffffffffu, eq);
      if (lane == 0) wsum[warp] = __popc(bal);
      __syncthreads();
      unsigned off = 0, total = 0;
      for (int w = 0; w < 8; ++w) {
        if (w < warp) off += wsum[w];
        total += wsum[w];
      }
      if (eq) {
        const unsigned pos = cbase + off + __popc(bal & ltMask);
        candV[pos] = v;
        candI[pos] = x;
      }
      cbase += total;
      __syncthreads();
    }
    const int c = static_cast<int>(cand);
    // Levels 1 and 2 on the candidates.
    for (int level = 1; level < 3; ++level) {
      const int shift = level == 1 ? 10 : 0;
      const int nbins = level == 1 ? 2048 : 1024;
      for (int i = tid; i < nbins; i += blockDim.x) hist[i] = 0;
      __syncthreads();
      for (int base = 0; base < c; base += blockDim.x) {
        const int i = base + tid;
        const unsigned v = i < c ? candV[i] : 0u;
        hist_add_agg2(hist, (v >> shift) & static_cast<unsigned>(nbins - 1), i < c && (v & mask) == prefix);
      }
      __syncthreads();
      find_bin(hist, nbins, krem, wsum, &selBin, &selKrem);
      prefix |= selBin << shift;
      krem = selKrem;
      mask |= static_cast<unsigned>(nbins - 1) << shift;
      __syncthreads();
    }
    // prefix = the k-th largest's bit pattern; candidates above it are in, and the first krem equal to it
    // in index order (the candidates are in index order).
    const unsigned thr = prefix, take = krem, gtCount = static_cast<unsigned>(k) - take;
    unsigned tieBase = 0;
    for (int base = 0; base < c; base += blockDim.x) {
      const int i = base + tid;
      const unsigned v = i < c ? candV[i] : 0u;
      if (i < c && v > thr) out[atomicAdd(&cntGt, 1)] = candI[i];
      const bool eq = i < c && v == thr;
      const unsigned bal = __ballot_sync(0xffffffffu, eq);
      if (lane == 0) wsum[warp] = __popc(bal);
      __syncthreads();
      unsigned off = 0, total = 0;
      for (int w = 0; w < 8; ++w) {
        if (w < warp) off += wsum[w];
        total += wsum[w];
      }
      const unsigned rank = tieBase + off + __popc(bal & ltMask);
      if (eq && rank < take) out[gtCount + rank] = candI[i];
      tieBase += total;
      __syncthreads();
    }
    return;
  }

  // Too many candidates: v1's remaining passes over the row.
  for (int level = 1; level < 3; ++level) {
    const int shift = level == 1 ? 10 : 0;
    const int nbins = level == 1 ? 2048 : 1024;
    for (int i = tid; i < nbins; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int base = 0; base < st; base += blockDim.x) {
      const int x = base + tid;
      const unsigned v = x < st ? u[x] : 0u;
      hist_add_agg2(hist, (v >> shift) & static_cast<unsigned>(nbins - 1), x < st && (v & mask) == prefix);
    }
    __syncthreads();
    find_bin(hist, nbins, krem, wsum, &selBin, &selKrem);
    prefix |= selBin << shift;
    krem = selKrem;
    mask |= static_cast<unsigned>(nbins - 1) << shift;
    __syncthreads();
  }
  const unsigned thr = prefix, take = krem, gtCount = static_cast<unsigned>(k) - take;
  unsigned tieBase = 0;
  for (int base = 0; base < st; base += blockDim.x) {
    const int x = base + tid;
    const unsigned v = x < st ? u[x] : 0u;
    const bool gt = x < st && v > thr, eq = x < st && v == thr;
    if (gt) out[atomicAdd(&cntGt, 1)] = x;
    const unsigned bal = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) wsum[warp] = __popc(bal);
    __syncthreads();
    unsigned off = 0, total = 0;
    for (int w = 0; w < 8; ++w) {
      if (w < warp) off += wsum[w];
      total += wsum[w];
    }
    const unsigned rank = tieBase + off + __popc(bal & ltMask);
    if (eq && rank < take) out[gtCount + rank] = x;
    tieBase += total;
    __syncthreads();
  }
}

}  // namespace

cudaError_t launch_select_v2(const KascadePrefillShape& s, const float* pooled, int pairBase, int pairs,
                             size_t perPair, const int* counts, int kMax, int* indices, cudaStream_t st) {
  select_prefill_v2_kernel<<<dim3(tiles_of(s), pairs), 256, 0, st>>>(s, pooled, pairBase, perPair, counts, kMax,
                                                                     indices);
  return cudaGetLastError();
}

}  // namespace pf
}  // namespace kascade
