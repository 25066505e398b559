// The anchors' exact Top-k of a pooled row, select v3 (after every pool since session 5): a radix select (11 + 11
// + 10 bits of the f32 pattern, then one compaction pass, ties at the k-th largest lowest index first) with
// 16-byte loads, two in flight per thread. Why: the first select (session 1's select_prefill_kernel) read one
// 4-byte score per thread and loop trip, so each warp had one 128-byte load in flight; with 64 warps per SM that
// was about 1.4 TB/s (ncu: 1.40 ms at 32k for four passes over 537 MB, 14 % L2 hits); this one takes 0.91 ms
// (call B of session 5). Session 3's two-pass select (select v2, pools v7 / v8) did not pay and is gone.
//
// select_prefill_v3_kernel: grid (tiles, pairs in this pass), 256 threads, one block per pooled row of s_t
// scores (>= 0, so their f32 bit patterns order like the values; s_t a multiple of 32; rows start 64-byte aligned
// in the packed layout), k = counts[t] of them selected. Writes the k indices in indices[pair, t, 0 .. k) (order
// free), -1 in the unused entries. Bytes: the row four times (three histogram passes and the compaction), three
// with FINISH2 (below; pool v32, the default since session 6's call B). Call B also timed four 16-byte loads in
// flight per thread instead of two (pool v33: the anchor 298.2 against 296.5 ms at 128k): gone.
#include "prefill_attention.cuh"
#include "select_common.cuh"

namespace kascade {
namespace pf {

namespace {

constexpr int NT = 256;  // threads per block

constexpr int PER = 8;  // scores per thread and trip (two 16-byte loads)

// The row's scores x .. x + 7 (x a multiple of 8; past st: 0, never counted).
__device__ __forceinline__ void load8(const unsigned* u, int x, int st, unsigned (&v)[PER]) {
  const uint4 a = x < st ? __ldg(reinterpret_cast<const uint4*>(u + x)) : make_uint4(0, 0, 0, 0);
  const uint4 b = x + 4 < st ? __ldg(reinterpret_cast<const uint4*>(u + x + 4)) : make_uint4(0, 0, 0, 0);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

constexpr int kSel3Cand = 2048;  // FINISH2: candidates sharing the k-th largest's top 22 bits kept in shared memory

// FINISH2 (pool v32): after the second digit, one pass over the row writes every score whose top 22 bits
// are above the k-th largest's and keeps those equal to them (a bin 2^-13 wide: a few dozen at 128k) in shared
// memory, where the third digit and the ties are resolved; more than kSel3Cand candidates fall back to the
// third pass and the compaction. The row is read three times.
template <bool FINISH2>
__global__ void __launch_bounds__(NT)
    select_prefill_v3_kernel(KascadePrefillShape s, const float* __restrict__ pooled, size_t perPair,
                             const int* __restrict__ counts, int kMax, int* __restrict__ indices, int pairBase) {
  __shared__ unsigned hist[2048];
  __shared__ unsigned wsum[NT / 32];
  __shared__ unsigned res[2];
  __shared__ int cntGt;
  __shared__ int nCand;
  __shared__ unsigned candV[FINISH2 ? kSel3Cand : 1];
  __shared__ int candX[FINISH2 ? kSel3Cand : 1];
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y;
  const int st = s.queryStart + t * kT;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int k = min(max(__ldg(counts + t), 0), min(st, kMax));
  int* out = indices + (static_cast<size_t>(pair) * tiles + t) * kMax;
  for (int i = k + tid; i < kMax; i += NT) out[i] = -1;
  if (k == 0) return;
  if (k == st) {  // early tiles: every earlier key
    for (int i = tid; i < st; i += NT) out[i] = i;
    return;
  }
  const unsigned* u =
      reinterpret_cast<const unsigned*>(pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t));
  constexpr int kStride = NT * PER;

  // Scores are >= 0, so their bit patterns order like the values: radix select on 11 + 11 + 10 bits.
  unsigned prefix = 0, mask = 0, krem = static_cast<unsigned>(k);
  for (int level = 0; level < 3; ++level) {
    const int shift = level == 0 ? 21 : level == 1 ? 10 : 0;
    const int nbins = level < 2 ? 2048 : 1024;
    if (FINISH2 && level == 2) {
      // prefix = bits 31..10 of the k-th largest, krem = the rank wanted among the scores sharing them.
      const unsigned hi = prefix >> 10;
      if (tid == 0) {
        cntGt = 0;
        nCand = 0;
      }
      __syncthreads();
      for (int base = 0; base < st; base += kStride) {
        const int x = base + tid * PER;
        unsigned v[PER];
        load8(u, x, st, v);
#pragma unroll
        for (int e = 0; e < PER; ++e) {
          if (x + e >= st) continue;
          const unsigned h = v[e] >> 10;
          if (h > hi) {
            out[atomicAdd(&cntGt, 1)] = x + e;
          } else if (h == hi) {
            const int c = atomicAdd(&nCand, 1);
            if (c < kSel3Cand) {
              candV[c] = v[e];
              candX[c] = x + e;
            }
          }
        }
      }
      for (int i = tid; i < 1024; i += NT) hist[i] = 0;
      __syncthreads();
      const int nc = nCand;
      if (nc <= kSel3Cand) {
        for (int i = tid; i < nc; i += NT) atomicAdd(&hist[candV[i] & 1023u], 1u);
        __syncthreads();
        select_rank_bin<NT>([&](int bin) { return hist[bin]; }, 1024, krem, wsum, res);
        const unsigned thr = prefix | res[0], take = res[1], nTies = hist[res[0]];
        // Above the k-th: all; at it: the take lowest indices (ranked among the ties when some are left out).
        for (int i = tid; i < nc; i += NT) {
          const unsigned v = candV[i];
          bool in = v > thr;
          if (v == thr) {
            unsigned rank = 0;
            if (nTies > take)
              for (int c = 0; c < nc; ++c) rank += candV[c] == thr && candX[c] < candX[i] ? 1u : 0u;
            in = rank < take;
          }
          if (in) out[atomicAdd(&cntGt, 1)] = candX[i];
        }
        return;
      }
    }
    for (int i = tid; i < nbins; i += NT) hist[i] = 0;
    __syncthreads();
    for (int base = 0; base < st; base += kStride) {
      const int x = base + tid * PER;
      unsigned v[PER];
      load8(u, x, st, v);
#pragma unroll
      for (int e = 0; e < PER; ++e)
        warp_hist_add(hist, (v[e] >> shift) & static_cast<unsigned>(nbins - 1), x + e < st && (v[e] & mask) == prefix);
    }
    __syncthreads();
    // The bin holding rank krem from the top (select_common.cuh's block scan, shared with the decode selects).
    select_rank_bin<NT>([&](int bin) { return hist[bin]; }, nbins, krem, wsum, res);
    prefix |= res[0] << shift;
    krem = res[1];
    mask |= static_cast<unsigned>(nbins - 1) << shift;
  }
  // prefix is now the exact bit pattern of the k-th largest; take every score above it and the first krem
  // scores equal to it in index order (thread tid holds scores base + PER tid ..: an exclusive scan of the
  // threads' tie counts ranks them).
  const unsigned thr = prefix, take = krem, gtCount = static_cast<unsigned>(k) - take;
  if (tid == 0) cntGt = 0;
  __syncthreads();
  unsigned tieBase = 0;
  for (int base = 0; base < st; base += kStride) {
    const int x = base + tid * PER;
    unsigned v[PER];
    load8(u, x, st, v);
    unsigned ties = 0;
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      if (x + e < st && v[e] > thr) out[atomicAdd(&cntGt, 1)] = x + e;
      ties += x + e < st && v[e] == thr ? 1u : 0u;
    }
    unsigned inc = ties;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned y = __shfl_up_sync(0xffffffffu, inc, o);
      if (lane >= o) inc += y;
    }
    if (lane == 31) wsum[warp] = inc;
    __syncthreads();
    unsigned off = inc - ties, total = 0;
    for (int w = 0; w < NT / 32; ++w) {
      if (w < warp) off += wsum[w];
      total += wsum[w];
    }
    unsigned rank = tieBase + off;
#pragma unroll
    for (int e = 0; e < PER; ++e)
      if (x + e < st && v[e] == thr) {
        if (rank < take) out[gtCount + rank] = x + e;
        ++rank;
      }
    tieBase += total;
    __syncthreads();
  }
}

}  // namespace

cudaError_t launch_select_v3(const KascadePrefillShape& s, const float* pooled, int pairBase, int pairs,
                             size_t perPair, const int* counts, int kMax, int* indices, bool finish2, cudaStream_t st) {
  const dim3 grid(tiles_of(s), pairs);
  if (finish2)
    select_prefill_v3_kernel<true><<<grid, NT, 0, st>>>(s, pooled, perPair, counts, kMax, indices, pairBase);
  else
    select_prefill_v3_kernel<false><<<grid, NT, 0, st>>>(s, pooled, perPair, counts, kMax, indices, pairBase);
  return cudaGetLastError();
}

}  // namespace pf
}  // namespace kascade
