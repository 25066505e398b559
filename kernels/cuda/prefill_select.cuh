// The anchors' exact Top-k of one pooled row (select v3's body): a radix select of the k largest of a row of
// st scores (>= 0, so their f32 bit patterns order like the values; st a multiple of 32; the row 16-byte
// aligned), 11 + 11 + 10 bits through shared-memory histograms (warp-aggregated increments, select_common.cuh's
// block scan finds the bin holding the wanted rank), then one compaction pass: every score above the k-th
// largest, and ties at it lowest index first (the spec's rule, kept exactly). 16-byte loads, two in flight per
// thread. Run by the NT threads of a CTA (select_prefill_v3_kernel, prefill_select_v3.cu: one 256-thread block
// per row). Session 7 also ran it inside the pool's CTAs (pools v53 / v54: slower, gone). Not part of the public
// C API.
#pragma once
#include "prefill_attention.cuh"
#include "prefill_v9_plan.h"
#include "select_common.cuh"

namespace kascade {
namespace pf {

constexpr int kSelPer = 8;       // scores per thread and trip (two 16-byte loads)
constexpr int kSel3Cand = 2048;  // candidates sharing the k-th largest's top 22 bits kept in shared memory

// The shared memory one row's select works in (NT / 32 words of wsum).
struct SelectShared {
  unsigned* hist;   // 2048 bins
  unsigned* wsum;   // NT / 32
  unsigned* res;    // 2
  int* cnt;         // 2: scores written so far, candidates kept
  unsigned* candV;  // kSel3Cand
  int* candX;       // kSel3Cand
};

// The row's scores x .. x + 7 (x a multiple of 8; past st: 0, never counted).
__device__ __forceinline__ void sel_load8(const unsigned* u, int x, int st, unsigned (&v)[kSelPer]) {
  const uint4* p = reinterpret_cast<const uint4*>(u + x);
  const uint4 z = make_uint4(0, 0, 0, 0);
  const uint4 a = x < st ? __ldg(p) : z;
  const uint4 b = x + 4 < st ? __ldg(p + 1) : z;
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// f(x, v) for each of the thread's trips over the row: v = scores x .. x + 7 (past st: 0). Every thread makes
// the same number of trips, so f may hold a CTA barrier.
template <int NT, typename F>
__device__ __forceinline__ void sel_row_trips(const unsigned* u, int st, F f) {
  for (int base = 0; base < st; base += NT * kSelPer) {
    const int x = base + static_cast<int>(threadIdx.x) * kSelPer;
    unsigned v[kSelPer];
    sel_load8(u, x, st, v);
    f(x, v);
  }
}

// Score x (bit pattern v) in a pass that keeps a candidate bucket: above it, written to out at the next place
// (sh.cnt[0]); in it, kept as a candidate (sh.cnt[1] counts them, the first kSel3Cand are stored).
__device__ __forceinline__ void sel_keep(bool above, bool in, unsigned v, int x, int* out, const SelectShared& sh) {
  if (above) {
    out[atomicAdd(&sh.cnt[0], 1)] = x;
  } else if (in) {
    const int c = atomicAdd(&sh.cnt[1], 1);
    if (c < kSel3Cand) {
      sh.candV[c] = v;
      sh.candX[c] = x;
    }
  }
}

// The k (1 <= k < st) largest of row u[0 .. st) into out[0 .. k) (order free). After the second digit, one
// pass over the row writes every score whose top 22 bits are above the k-th largest's and keeps those equal
// to them (a bin 2^-13 wide: a few dozen at 128k) in shared memory, where the third digit and the ties are
// resolved; more than kSel3Cand candidates fall back to the third pass and the compaction. The row is read three
// times (four on the fallback).
template <int NT>
__device__ void select_pooled_row(const unsigned* u, int st, int k, int* out, const SelectShared& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  unsigned* hist = sh.hist;
  int& cntGt = sh.cnt[0];
  int& nCand = sh.cnt[1];

  unsigned prefix = 0, mask = 0, krem = static_cast<unsigned>(k);
  for (int level = 0; level < 3; ++level) {
    const int shift = level == 0 ? 21 : level == 1 ? 10 : 0;
    const int nbins = level < 2 ? 2048 : 1024;
    if (level == 2) {
      // prefix = bits 31..10 of the k-th largest, krem = the rank wanted among the scores sharing them.
      const unsigned hi = prefix >> 10;
      if (tid == 0) {
        cntGt = 0;
        nCand = 0;
      }
      __syncthreads();
      sel_row_trips<NT>(u, st, [&](int x, const unsigned(&v)[kSelPer]) {
#pragma unroll
        for (int e = 0; e < kSelPer; ++e)
          if (x + e < st) sel_keep(v[e] >> 10 > hi, v[e] >> 10 == hi, v[e], x + e, out, sh);
      });
      for (int i = tid; i < 1024; i += NT) hist[i] = 0;
      __syncthreads();
      const int nc = nCand;
      if (nc <= kSel3Cand) {
        for (int i = tid; i < nc; i += NT) atomicAdd(&hist[sh.candV[i] & 1023u], 1u);
        __syncthreads();
        select_rank_bin<NT>([&](int bin) { return hist[bin]; }, 1024, krem, sh.wsum, sh.res);
        const unsigned thr = prefix | sh.res[0], take = sh.res[1], nTies = hist[sh.res[0]];
        // Above the k-th: all; at it: the take lowest indices (ranked among the ties when some are left out).
        for (int i = tid; i < nc; i += NT) {
          const unsigned v = sh.candV[i];
          bool in = v > thr;
          if (v == thr) {
            unsigned rank = 0;
            if (nTies > take)
              for (int c = 0; c < nc; ++c) rank += sh.candV[c] == thr && sh.candX[c] < sh.candX[i] ? 1u : 0u;
            in = rank < take;
          }
          if (in) out[atomicAdd(&cntGt, 1)] = sh.candX[i];
        }
        return;
      }
      // More than kSel3Cand candidates: the third digit and the compaction below (which writes the scores above
      // the k-th again, over the ones written here).
    }
    for (int i = tid; i < nbins; i += NT) hist[i] = 0;
    __syncthreads();
    sel_row_trips<NT>(u, st, [&](int x, const unsigned(&v)[kSelPer]) {
#pragma unroll
      for (int e = 0; e < kSelPer; ++e)
        warp_hist_add(hist, (v[e] >> shift) & static_cast<unsigned>(nbins - 1), x + e < st && (v[e] & mask) == prefix);
    });
    __syncthreads();
    // The bin holding rank krem from the top (select_common.cuh's block scan, shared with the decode selects).
    select_rank_bin<NT>([&](int bin) { return hist[bin]; }, nbins, krem, sh.wsum, sh.res);
    prefix |= sh.res[0] << shift;
    krem = sh.res[1];
    mask |= static_cast<unsigned>(nbins - 1) << shift;
  }
  // prefix is now the exact bit pattern of the k-th largest; take every score above it and the first krem
  // scores equal to it in index order (thread tid holds scores base + kSelPer tid ..: an exclusive scan of the
  // threads' tie counts ranks them).
  const unsigned thr = prefix, take = krem, gtCount = static_cast<unsigned>(k) - take;
  if (tid == 0) cntGt = 0;
  __syncthreads();
  unsigned tieBase = 0;
  sel_row_trips<NT>(u, st, [&](int x, const unsigned(&v)[kSelPer]) {
    unsigned ties = 0;
#pragma unroll
    for (int e = 0; e < kSelPer; ++e) {
      if (x + e < st && v[e] > thr) out[atomicAdd(&cntGt, 1)] = x + e;
      ties += x + e < st && v[e] == thr ? 1u : 0u;
    }
    unsigned inc = ties;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned y = __shfl_up_sync(0xffffffffu, inc, o);
      if (lane >= o) inc += y;
    }
    if (lane == 31) sh.wsum[warp] = inc;
    __syncthreads();
    unsigned off = inc - ties, total = 0;
    for (int w = 0; w < NT / 32; ++w) {
      if (w < warp) off += sh.wsum[w];
      total += sh.wsum[w];
    }
    unsigned rank = tieBase + off;
#pragma unroll
    for (int e = 0; e < kSelPer; ++e)
      if (x + e < st && v[e] == thr) {
        if (rank < take) out[gtCount + rank] = x + e;
        ++rank;
      }
    tieBase += total;
    __syncthreads();
  });
}

// The candidates' share of a row's selection (sh.candV / candX, nc of them): every candidate whose sub-bin (sub_of)
// is above sb, and those in sb whose rank (rank_of: greater scores, then equal ones at lower indices) is below take,
// written at out[sh.cnt[0] ..].
template <int NT, typename Sub, typename Rank>
__device__ __forceinline__ void sel_take_candidates(int nc, unsigned sb, unsigned take, Sub sub_of, int* out,
                                                    const SelectShared& sh, Rank rank_of) {
  for (int i = threadIdx.x; i < nc; i += NT) {
    const unsigned v = sh.candV[i], h = sub_of(v);
    const int xi = sh.candX[i];
    bool in = h > sb;
    if (h == sb) in = rank_of(v, xi) < take;
    if (in) out[atomicAdd(&sh.cnt[0], 1)] = xi;
  }
}

// The k (1 <= k < st) largest of row u[0 .. st) as select_pooled_row, knowing the row's largest score (its f32
// bit pattern mb): one pass counts the scores in 4096 bins of 1/256 octave over [mb 2^-16, mb] (bin 0 takes
// everything at or below the range), one pass writes the scores above the bin B holding the k-th largest and keeps
// B's in shared memory (a few hundred at 128k on random inputs), where 1024 sub-bins of B and, inside the sub-bin
// holding the k-th, each candidate's rank (greater scores, then equal ones at lower indices) decide the rest.
// Two passes over the row. Where B is the catch-all bin 0
// or holds more than kSel3Cand scores, select_pooled_row runs instead (exact either way). sh.hist must hold
// 4096 bins.
// Each trip's 8 scores are checked against the row's end once (st and the trip's first index are multiples of 8);
// the second pass compares the patterns with the k-th bin's bounds. (Call B timed the same select checking every
// score against the end and binning it again in the second pass, pool v55: 0.41 against 0.38 ms at 32k, ncu.)
constexpr int kSelMaxBins = 4096;
template <int NT>
__device__ void select_pooled_row_max(const unsigned* u, int st, int k, int* out, const SelectShared& sh,
                                      unsigned mb) {
  const int tid = threadIdx.x;
  unsigned* hist = sh.hist;
  int& cntGt = sh.cnt[0];
  int& nCand = sh.cnt[1];
  const unsigned lo = mb > (16u << 23) ? mb - (16u << 23) : 0u;  // 16 octaves below the largest
  for (int i = tid; i < kSelMaxBins; i += NT) hist[i] = 0;
  if (tid == 0) {
    cntGt = 0;
    nCand = 0;
  }
  __syncthreads();
  sel_row_trips<NT>(u, st, [&](int x, const unsigned(&v)[kSelPer]) {
    if (x < st)
#pragma unroll
      for (int e = 0; e < kSelPer; ++e)
        atomicAdd(&hist[min((max(v[e], lo) - lo) >> 15, static_cast<unsigned>(kSelMaxBins - 1))], 1u);
  });
  __syncthreads();
  select_rank_bin<NT>([&](int bin) { return hist[bin]; }, kSelMaxBins, static_cast<unsigned>(k), sh.wsum, sh.res);
  const unsigned b = sh.res[0], krem = sh.res[1];
  if (b > 0) {
    // Bin b holds the patterns [candLo, candHi) (the last bin everything from candLo up).
    const unsigned candLo = lo + (b << 15);
    const unsigned candHi = b + 1 < static_cast<unsigned>(kSelMaxBins) ? candLo + (1u << 15) : 0xffffffffu;
    sel_row_trips<NT>(u, st, [&](int x, const unsigned(&v)[kSelPer]) {
      if (x < st)
#pragma unroll
        for (int e = 0; e < kSelPer; ++e) sel_keep(v[e] >= candHi, v[e] >= candLo, v[e], x + e, out, sh);
    });
    for (int i = tid; i < 1024; i += NT) hist[i] = 0;
    __syncthreads();
    const int nc = nCand;
    if (nc <= kSel3Cand) {
      // The candidates' bit patterns lie in [candLo, candLo + 2^15): 1024 sub-bins of 32 patterns; the sub-bin s
      // holding rank krem, then each of s's candidates ranked among s's (greater, or equal at a lower index).
      // (The largest score sits 2^27 patterns above lo: bin 4096 and sub-bin 1024 clamp to the last ones.)
      const auto sub_of = [candLo](unsigned v) { return min((v - candLo) >> 5, 1023u); };
      for (int i = tid; i < nc; i += NT) atomicAdd(&hist[sub_of(sh.candV[i])], 1u);
      __syncthreads();
      select_rank_bin<NT>([&](int bin) { return hist[bin]; }, 1024, krem, sh.wsum, sh.res);
      const unsigned sb = sh.res[0], take = sh.res[1];
      sel_take_candidates<NT>(nc, sb, take, sub_of, out, sh, [&](unsigned v, int xi) {
        unsigned rank = 0;
        for (int c = 0; c < nc; ++c) {
          const unsigned w = sh.candV[c];
          rank += sub_of(w) == sb && (w > v || (w == v && sh.candX[c] < xi)) ? 1u : 0u;
        }
        return rank;
      });
      return;
    }
  }
  __syncthreads();  // every thread is past the bins and counters before the full select reuses them
  select_pooled_row<NT>(u, st, k, out, sh);
}

// Pool v60's select (session 8; call A's v57 without the warp-aggregated writes): the k (1 <= k < st) largest of row
// u[0 .. st) as select_pooled_row_max, with the row read one and an eighth times instead of twice. A sample (the first
// 128 scores of every 1024: an eighth, in whole 512-byte runs) is counted in select_pooled_row_max's 4096 bins under
// the row's largest score; the bins holding the sample's ranks ks -/+ d (ks = k ns / st, the k-th's expected rank among
// the ns sampled scores, d = 3.5 standard deviations of it + 8) bound a band. One pass over the row then writes every
// score above the band and keeps the band's scores in shared memory (kSelSampleCand), where 1024 sub-bins and, inside
// the sub-bin holding the k-th, each candidate's rank (greater scores, then equal ones at lower indices) pick the rest.
// Exact either way: if the band missed the k-th (more than k scores above it, fewer than k above its bottom),
// overflowed the candidates or holds over 1536 in the k-th's sub-bin (ties), select_pooled_row_max runs (two more
// passes). Rows shorter than kSelSampleMinRow run select_pooled_row_max. sh.hist must hold 4096 bins, sh.candV / candX
// kSelSampleCand.
constexpr int kSelSampleCand = 3584;
// (Pool v60 launches rows shorter than 16384 on v56's select instead, prefill_select_v3.cu: v57 lost at 8k and 32k.)
constexpr int kSelSampleMinRow = 1024;
template <int NT>
__device__ void select_pooled_row_sampled(const unsigned* u, int st, int k, int* out, const SelectShared& sh,
                                          unsigned mb) {
  if (st < kSelSampleMinRow) {
    select_pooled_row_max<NT>(u, st, k, out, sh, mb);
    return;
  }
  const int tid = threadIdx.x;
  unsigned* hist = sh.hist;
  int& cntGt = sh.cnt[0];
  int& nCand = sh.cnt[1];
  const unsigned lo = mb > (16u << 23) ? mb - (16u << 23) : 0u;
  const auto bin_of = [lo](unsigned v) { return min((max(v, lo) - lo) >> 15, static_cast<unsigned>(kSelMaxBins - 1)); };
  for (int i = tid; i < kSelMaxBins; i += NT) hist[i] = 0;
  if (tid == 0) {
    cntGt = 0;
    nCand = 0;
  }
  __syncthreads();
  // The sample (prefill_v9_plan.h): chunk c (8 scores) = scores 1024 (c / 16) + 8 (c % 16) ..
  static_assert(kSelSampleRun == 16 * kSelPer && kSelSampleEvery == 1024, "the sample's chunk walk below");
  for (int c = tid;; c += NT) {
    const int x = (c >> 4) * kSelSampleEvery + (c & 15) * kSelPer;
    if (x >= st) break;
    unsigned v[kSelPer];
    sel_load8(u, x, st, v);
#pragma unroll
    for (int e = 0; e < kSelPer; ++e) atomicAdd(&hist[bin_of(v[e])], 1u);
  }
  __syncthreads();
  const int ns = select_sample_count(st);
  const SelectSampleBand band = select_sample_band(k, st, ns);
  const int rTop = band.rTop, rBot = band.rBot;
  const auto count = [&](int bin) { return hist[bin]; };
  select_rank_bin<NT>(count, kSelMaxBins, static_cast<unsigned>(rBot), sh.wsum, sh.res);
  const unsigned bLo = sh.res[0];
  unsigned bHi = kSelMaxBins - 1;
  if (rTop >= 1) {
    select_rank_bin<NT>(count, kSelMaxBins, static_cast<unsigned>(rTop), sh.wsum, sh.res);
    bHi = sh.res[0];
  }
  // The band: patterns [candLo, candHi) (bin 0 reaches down to 0, the last bin up to everything).
  const unsigned candLo = bLo == 0 ? 0u : lo + (bLo << 15);
  const unsigned candHi = bHi + 1 < static_cast<unsigned>(kSelMaxBins) ? lo + ((bHi + 1) << 15) : 0xffffffffu;
  // Each trip's places come from one warp scan of the lanes' counts (above the band in the low half, in it in the
  // high) and one atomic per counter and warp, so the writes take no divergent atomics (pool v57's did: 15 active
  // threads per warp, issue-bound at 74 % of the slots, 0.43 ms at 32k against v56's 0.38).
  const int lane = tid & 31;
  sel_row_trips<NT>(u, st, [&](int x, const unsigned(&v)[kSelPer]) {
    unsigned am = 0u, cm = 0u;  // scores x + e above the band / in it
    if (x < st)
#pragma unroll
      for (int e = 0; e < kSelPer; ++e) {
        am |= (v[e] >= candHi ? 1u : 0u) << e;
        cm |= (v[e] < candHi && v[e] >= candLo ? 1u : 0u) << e;
      }
    const unsigned mine = static_cast<unsigned>(__popc(am)) | (static_cast<unsigned>(__popc(cm)) << 16);
    unsigned incl = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned y = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += y;
    }
    int baseA = 0, baseC = 0;
    if (lane == 31 && incl != 0u) {
      baseA = atomicAdd(&cntGt, static_cast<int>(incl & 0xffffu));
      baseC = atomicAdd(&nCand, static_cast<int>(incl >> 16));
    }
    const unsigned excl = incl - mine;
    int pa = __shfl_sync(0xffffffffu, baseA, 31) + static_cast<int>(excl & 0xffffu);
    int pc = __shfl_sync(0xffffffffu, baseC, 31) + static_cast<int>(excl >> 16);
    for (; am; am &= am - 1, ++pa)
      if (pa < k) out[pa] = x + __ffs(am) - 1;
    for (; cm; cm &= cm - 1, ++pc)
      if (pc < kSelSampleCand) {
        const int xe = x + __ffs(cm) - 1;
        sh.candV[pc] = __ldg(u + xe);  // (just loaded: an L1 hit)
        sh.candX[pc] = xe;
      }
  });
  __syncthreads();
  const int nAbove = cntGt, nc = nCand;
  if (nAbove <= k && nAbove + nc >= k && nc <= kSelSampleCand) {
    const unsigned krem = static_cast<unsigned>(k - nAbove);
    if (krem == 0) return;
    int shift = 0;
    while (((candHi - candLo - 1u) >> shift) >= 1024u) ++shift;
    const auto sub_of = [candLo, shift](unsigned v) { return (v - candLo) >> shift; };
    for (int i = tid; i < 1024; i += NT) hist[i] = 0;
    __syncthreads();
    for (int i = tid; i < nc; i += NT) atomicAdd(&hist[sub_of(sh.candV[i])], 1u);
    __syncthreads();
    select_rank_bin<NT>(count, 1024, krem, sh.wsum, sh.res);
    const unsigned sb = sh.res[0], take = sh.res[1];
    // The sub-bin's candidates listed in hist[1024 ..) (pairs), so each ranks against them alone.
    constexpr int kList = (kSelMaxBins - 1024) / 2;
    if (tid == 0) nCand = 0;
    __syncthreads();
    for (int i = tid; i < nc; i += NT)
      if (sub_of(sh.candV[i]) == sb) {
        const int c = atomicAdd(&nCand, 1);
        if (c < kList) {
          hist[1024 + 2 * c] = sh.candV[i];
          hist[1024 + 2 * c + 1] = static_cast<unsigned>(sh.candX[i]);
        }
      }
    __syncthreads();
    if (nCand <= kList) {  // (else, e.g. over 1536 tied scores, the two-pass select below)
      const int nl = nCand;
      sel_take_candidates<NT>(nc, sb, take, sub_of, out, sh, [&](unsigned v, int xi) {
        unsigned rank = 0;
        for (int c = 0; c < nl; ++c) {
          const unsigned w = hist[1024 + 2 * c];
          rank += w > v || (w == v && static_cast<int>(hist[1024 + 2 * c + 1]) < xi) ? 1u : 0u;
        }
        return rank;
      });
      return;
    }
  }
  __syncthreads();  // every thread has read the counters before the two-pass select resets them
  select_pooled_row_max<NT>(u, st, k, out, sh, mb);
}

// A tile's selection when it needs no select: -1 in out[k .. kMax), and with k == st every earlier key. True
// when the row is done (k == 0 or k == st). Every thread of the CTA calls it (nt threads from tid).
__device__ __forceinline__ bool select_trivial_row(int* out, int k, int st, int kMax, int tid, int nt) {
  for (int i = k + tid; i < kMax; i += nt) out[i] = -1;
  if (k == st)
    for (int i = tid; i < st; i += nt) out[i] = i;
  return k == 0 || k == st;
}

}  // namespace pf
}  // namespace kascade
