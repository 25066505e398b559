// The anchors' Top-k select at small batch as ONE cooperative launch over the whole GPU
// (KASCADE_VARIANT_SELECT_B1, cuda-b1, fifth session). At batch 1 the rows are few (8 KV heads) and
// long (131072 keys at 128k): the multi-pass select runs ~64 blocks per pass over five launches, the
// stream select (bit 2048) spends most of its ~50 us finishing each row's list in one CTA. Here every
// CTA of a resident grid takes an equal share of all rows' keys:
//
// Kernel b1_select_kernel<GS>, grid P = the CTAs resident at once, 512 threads; CTA c takes keys
// [c W / P, (c + 1) W / P) of the rows laid end to end (W = rows x n), one segment per row it touches.
//   phase 1  per segment: the row's per-head softmax max M_h and sum L_h from the scores pass's split
//            partials, then S(x) = sum_h exp2(l_h(x) - M_h) / L_h (post-softmax, group-pooled; the same
//            arithmetic as pool_hist_kernel) -> pooled [rows][n], and an 11-bit histogram of S's bits
//            30..20 (S >= 0: 8 exponent + 3 mantissa bits, 8 bins per octave) in shared memory, added
//            to the row's global histogram;                                               grid barrier
//   phase 2  per segment: the bin b1 holding rank k from the top (a block scan of the row's histogram);
//            keys above b1 -> indices, keys in b1 -> the row's candidate list (one atomic per CTA and list
//            reserves its range, then the warps write at their offsets);
//                                                                                          grid barrier
//   phase 3  per row (CTA r, r + P, ...): an exact radix select over the candidates (digits of bits
//            19..9 and 8..0) gives the k-th score T and how many keys equal to T are still wanted;
//            candidates above T -> indices, then that many equal to T (an arbitrary subset of the ties,
//            as the multi-pass select). The CTA then zeroes the row's histogram and counters for the
//            next launch's phase 1 (the scores pass zeroes them too with bit 8; without it the host
//            clears them first).
// Bit 33554432 (session 10, the anchor's early sparse pass; publish): the row's phase-3 CTA stores the row's ready count
// (entries written + 1) at state word kB1ReadyInt with release semantics, phase 2's count right after barrier 2 (it has
// acquired those writes through the barrier) and the whole list after phase 3; it leaves that word for the next scores
// pass (bit 8) or the next select's memset to clear.
// Exactly k distinct indices per row, order free. Global traffic: the logits once, the pooled scores
// written once and read twice (L2 at batch 1), the candidates. The candidate list lies after the logits
// in the workspace (workspace_layout): the logits stay intact for the anchor's sparse pass (the ws
// gather's logits mode reads them instead of K rows).
// Shared memory (sixth session; call B's trace at 128k batch 1 put phase 2 at 6.3 us and phase 3 at 13.0 of
// ~30, both waiting on one L2 round trip after another): each CTA keeps its segment's pooled scores from
// phase 1 (seg, up to kB1Seg keys; longer segments are read back from L2), and phase 3 first loads the
// row's candidates (index and score bits, up to kB1Cand; longer lists are read from L2 in every pass) into
// shared memory, so its two digit passes and the final pass run on chip.
// Session 7: when every CTA's segment fits in shared memory, phase 1 no longer writes the pooled row; phase 2
// writes each candidate's score at its list slot there instead (pooled[r][i] beside cand[r][i]), so phase 3
// loads its list in one coalesced round trip (not the keys, then their scores by key); and phase 3's final pass
// takes its output slots from a shared counter (one CTA writes the row then) instead of one global atomic per
// warp and iteration.
// (Session 11, lost and removed: call A, the dependent launch released at the select's start, anchor 110.85 against
// 110.27 us at 128k batch 1, and phase 1's logits loaded beside the heads' statistics (24 bytes of spills at GS 4),
// anchor 111.14 and layer 0 165.12 against 162.34; call B, the lines dropped by every CTA in phase 2 beside its
// reservation atomics (KASCADE_B1_SELECT_EARLY_DROP): the pass's first CTA started 1.15 us after barrier 2 instead of
// 2.27, but the anchor took 109.77 us in one graph of 27 calls against 103.63 (events 109.22 against 110.02); b1 probe.
// Call C, the lines dropped past barrier 2 only by the CTAs sharing an SM with a row's phase-3 CTA, the others exiting
// at once (KASCADE_B1_SELECT_DROP_PARTNERS): the pass's first CTA still started 2.46 us after barrier 2, and phase 3
// took 15.0-18.5 us against 8.0-9.6 beside its partner's drops; ws and select traces.)
// Tuning knobs, read per call: KASCADE_B1_SELECT_TRACE=1 prints CTA 0's phase ends (globaltimer, ns) and
// its first row's candidate count; KASCADE_B1_SELECT_L2=1 reads phases 2 and 3 from L2 as in call B.
// (Session 7, call B: launched as a programmatic dependent launch beside the scores pass (with bit 4096), the
// anchor took 122.78 us at 128k batch 1 against 123.10 without: removed.)
// (Session 6, call A: a cluster select, one 16-CTA cluster per row with the row's pooled scores in shared
// memory and the digits merged through distributed shared memory, took 106 us for the anchor at 32k batch
// 1 against this kernel's 60, and 46 against 39 at 8k (8-CTA clusters); removed. The third session saw
// 16-CTA clusters lose to 8-CTA ones in the cluster select of bit 512 as well.)
// The grid barriers count arrivals in g_b1_barrier[0] (zero at module load): barrier i (1, 2) waits until it
// reads i x P, so the release is the last arrival itself (session 7; grid_barrier's last CTA resets its counter
// and then bumps a generation: two more round trips); the last CTA out of barrier 2 (g_b1_barrier[1]) zeroes both
// for the next launch. Ops on one stream run one at a time (as for g_split_done).
#include <cooperative_groups.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "b1_l2.cuh"
#include "decode_attention.cuh"
#include "decode_device.cuh"
#include "select_common.cuh"

namespace kascade {

constexpr int kB1Threads = 512;
constexpr int kB1Bins = kHistBins;  // 2048: the first digit, S's bits 30..20 (select_radix's first digit)
constexpr int kB1Seg = 8192;        // a CTA's segment kept in shared memory (128k batch 1: 3972 keys per CTA)
constexpr int kB1Cand = 6144;       // a row's candidates kept in shared memory (index and score bits)
constexpr size_t kB1Smem = sizeof(float) * kB1Seg + 2 * sizeof(int) * kB1Cand;  // dynamic: 80 KB

// State per row (kStateInts ints): [0] indices written, [1] candidates listed.
struct B1SelectArgs {
  int n, heads, kvHeads, splits, topk, ctas;
  long long rows, work;
  const float* logits;   // [batch x heads][n], log2-domain scaled logits
  const float* part_ml;  // [batch x heads][splits][2]
  float* pooled;         // [rows][n]
  unsigned* hist;        // [rows][kB1Bins], zero on entry
  int* state;            // [rows][kStateInts], zero on entry
  int* cand;             // [rows][n] candidate keys (after the logits in the workspace)
  int* out;              // [rows][topk]
  int segInSmem;         // every CTA's segment fits kB1Seg
  int dropLogits;        // bit 8388608 (b1_l2.cuh): past barrier 2, drop the logits' lines from L2
  int candInSmem;        // phase 3 may cache its candidates (else it reads them from L2 in every pass)
  int trace;             // CTA 0 prints its phase ends
  int publish;           // bit 33554432: each row's ready count (entries written + 1) at state word kB1ReadyInt
};

// KASCADE_VARIANT_B1_EARLY_SPARSE (session 10): the row's ready count, stored with release semantics (thread 0 of the
// row's CTA, after it has acquired the writes it covers: phase 2's through barrier 2, phase 3's through the CTA's
// barrier); the anchor's sparse pass reads it with acquire loads (reuse_b1_decode.cu).
__device__ __forceinline__ void b1_publish_ready(int* st, int count) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(st + kB1ReadyInt), "r"(count + 1) : "memory");
}

__device__ unsigned g_b1_barrier[2];

// Grid barrier `i` (1 or 2) of a launch of P CTAs: arrive, then wait until all i x P arrivals of barriers 1..i.
// Session 8: the arrival is a release reduction (no fence, no returned value to wait for) and the wait polls with
// acquire loads (no trailing fence); the CTA's barrier before the arrival orders its threads' writes before thread
// 0's release. CTA 0's trace (128k batch 1, calls A and B, 8 traced launches): barrier 1 1.7-2.3 us and barrier 2
// 1.8-2.1 against 2.0-2.5 / 2.1-2.5 with a fence, an atomic and volatile polling.
__device__ __forceinline__ void b1_grid_sync(unsigned i, unsigned P) {
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(g_b1_barrier) : "memory");
    unsigned v;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(g_b1_barrier) : "memory");
    } while (v < i * P);
    // Everyone has arrived at the last barrier once P CTAs got here: the last one out resets the counters.
    if (i == 2 && atomicAdd(g_b1_barrier + 1, 1u) == P - 1) {
      atomicExch(g_b1_barrier, 0u);
      atomicExch(g_b1_barrier + 1, 0u);
    }
  }
  __syncthreads();
}

// A warp-aggregated slot: every lane with `take` gets a distinct index from *ctr (one atomic per warp).
__device__ __forceinline__ int b1_slot(int* ctr, bool take) {
  const unsigned m = __ballot_sync(0xffffffffu, take);
  if (m == 0) return -1;
  const int lane = static_cast<int>(threadIdx.x) & 31, leader = __ffs(m) - 1;
  int base = 0;
  if (lane == leader) base = atomicAdd(ctr, __popc(m));
  base = __shfl_sync(0xffffffffu, base, leader);
  return take ? base + __popc(m & ((1u << lane) - 1u)) : -1;
}

// Two CTAs per SM at every group size (session 8: with 8 keys per thread in phase 1 ptxas gave GS 4 84 registers,
// one CTA per SM; GS 8 had 99 before): no spills at 64 registers (ptxas -v).
template <int GS>
__global__ void __launch_bounds__(kB1Threads, 2) b1_select_kernel(const B1SelectArgs a) {
  __shared__ unsigned sh[kB1Bins];
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2], wcount[32];
  __shared__ int wbase[2], tie;
  extern __shared__ __align__(16) unsigned char b1_smem[];
  float* seg = reinterpret_cast<float*>(b1_smem);          // [kB1Seg] this CTA's pooled scores, key t at t - t0
  unsigned* ccv = reinterpret_cast<unsigned*>(seg + kB1Seg);  // [kB1Cand] phase 3: the candidates' score bits
  int* ccx = reinterpret_cast<int*>(ccv + kB1Cand);           // [kB1Cand] and their keys
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int n = a.n, G = a.kvHeads;
  int traceCnt = -1;
  __shared__ unsigned long long tr[11];  // CTA 0's trace marks (shared: no registers held across the phases)
  auto mark = [&](int i) {
    if (a.trace && blockIdx.x == 0 && tid == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      tr[i] = t;
    }
  };
  mark(0);
  const long long t0 = static_cast<long long>(blockIdx.x) * a.work / a.ctas;
  const long long t1 = (static_cast<long long>(blockIdx.x) + 1) * a.work / a.ctas;

  // Phase 1: pool and histogram, one segment per row.
  for (long long t = t0; t < t1;) {
    const long long r = t / n;
    const int x0 = static_cast<int>(t - r * n);
    const int x1 = static_cast<int>(min(t1 - r * n, static_cast<long long>(n)));
    const size_t bh0 = static_cast<size_t>(r / G) * a.heads + static_cast<size_t>(r % G) * GS;
    for (int i = tid; i < kB1Bins; i += kB1Threads) sh[i] = 0u;
    head_softmax_stats<GS, kB1Threads>(a.part_ml + bh0 * a.splits * 2, a.splits, Mh, iL);
    // kKeys keys per thread at a time: their GS x kKeys logit loads in flight together (session 8: 8 up to GS 4, so
    // 128k batch 1's ~3970-key segments take one round trip, not two).
    constexpr int kKeys = GS <= 4 ? 8 : 4;
    for (int xb0 = x0; xb0 < x1; xb0 += kKeys * kB1Threads) {  // the same trip count for every thread
      const int xb = xb0 + tid;
      float lg[kKeys][GS];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        const int x = xb + u * kB1Threads;
#pragma unroll
        for (int h = 0; h < GS; ++h) lg[u][h] = x < x1 ? __ldg(a.logits + (bh0 + h) * n + x) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        const int x = xb + u * kB1Threads;
        const bool in = x < x1;
        float S = 0.f;
#pragma unroll
        for (int h = 0; h < GS; ++h) S += exp2f(lg[u][h] - Mh[h]) * iL[h];
        if (in) {
          // With every segment in shared memory nothing reads the pooled row back by key: phase 2 lists the
          // candidates' scores there instead (session 7).
          if (a.segInSmem)
            seg[r * n + x - t0] = S;
          else
            a.pooled[r * n + x] = S;
          atomicAdd(&sh[__float_as_uint(S) >> 20], 1u);
        }
      }
    }
    __syncthreads();
    for (int i = tid; i < kB1Bins; i += kB1Threads)
      if (sh[i]) atomicAdd(&a.hist[r * kB1Bins + i], sh[i]);
    __syncthreads();
    t = (r + 1) * n;
  }
  mark(1);
  b1_grid_sync(1u, gridDim.x);
  mark(2);
  // Phase 2: keys above the rank-k bin -> indices, keys in it -> the candidate list.
  for (long long t = t0; t < t1;) {
    const long long r = t / n;
    const int x0 = static_cast<int>(t - r * n);
    const int x1 = static_cast<int>(min(t1 - r * n, static_cast<long long>(n)));
    for (int i = tid; i < kB1Bins; i += kB1Threads) sh[i] = __ldcg(&a.hist[r * kB1Bins + i]);
    __syncthreads();
    select_find_from_top<kB1Threads>(sh, kB1Bins, static_cast<unsigned>(a.topk), res);
    const unsigned b1 = res[0];
    mark(6);
    int* st = a.state + r * kStateInts;
    // Two walks over the segment by whole warps: count each warp's keys above b1 and in it, reserve the
    // CTA's output and candidate ranges with one atomic each (33 CTAs per row at batch 1 128k: per-warp
    // atomics on the row's two counters serialised), then write at the warps' offsets in key order.
    auto walk = [&](auto emit) {
      for (int base = x0 + warp * 32; base < x1; base += kB1Threads) {
        const int x = base + lane;
        const float S = x >= x1 ? 0.f : a.segInSmem ? seg[r * n + x - t0] : __ldcg(&a.pooled[r * n + x]);
        const unsigned bin = x < x1 ? (__float_as_uint(S) >> 20) : 0u;
        emit(x, __ballot_sync(0xffffffffu, x < x1 && bin > b1), __ballot_sync(0xffffffffu, x < x1 && bin == b1));
      }
    };
    unsigned nAbove = 0, nIn = 0;
    walk([&](int, unsigned ma, unsigned mi) {
      nAbove += __popc(ma);
      nIn += __popc(mi);
    });
    if (lane == 0) {
      wcount[warp] = nAbove;
      wcount[16 + warp] = nIn;
    }
    __syncthreads();
    if (tid == 0) {
      unsigned ta = 0, ti = 0;
      for (int w = 0; w < kB1Threads / 32; ++w) {
        const unsigned ca = wcount[w], ci = wcount[16 + w];
        wcount[w] = ta;
        wcount[16 + w] = ti;
        ta += ca;
        ti += ci;
      }
      wbase[0] = ta ? atomicAdd(st + 0, static_cast<int>(ta)) : 0;
      wbase[1] = ti ? atomicAdd(st + 1, static_cast<int>(ti)) : 0;
    }
    __syncthreads();
    mark(7);
    int oa = wbase[0] + static_cast<int>(wcount[warp]), oi = wbase[1] + static_cast<int>(wcount[16 + warp]);
    const unsigned below = (1u << lane) - 1u;
    walk([&](int x, unsigned ma, unsigned mi) {
      if (ma >> lane & 1u) a.out[r * a.topk + oa + __popc(ma & below)] = x;
      if (mi >> lane & 1u) {
        const int slot = oi + __popc(mi & below);
        a.cand[r * n + slot] = x;
        // segInSmem: the candidate's score at its list slot (the pooled row holds the list's scores).
        if (a.segInSmem) a.pooled[r * n + slot] = seg[r * n + x - t0];
      }
      oa += __popc(ma);
      oi += __popc(mi);
    });
    __syncthreads();
    t = (r + 1) * n;
  }
  mark(3);
  b1_grid_sync(2u, gridDim.x);
  mark(4);
  // A programmatic dependent launch after this one (the anchor's sparse pass with bit 4096) may start now: most
  // CTAs exit here, the rows' CTAs finish phase 3 (the dependent waits for the whole grid before it reads).
  pdl_release();
  // Bit 8388608 (b1_l2.cuh): past barrier 2 nothing reads the logits (phase 2 read the segments from shared memory or
  // the pooled rows, phase 3 reads the candidate lists, and the anchor's sparse pass copies K rows under this bit), so
  // their lines leave L2 without a write-back: the CTAs without a row in phase 3 drop them in equal shares while the
  // rows' CTAs run phase 3 (a grid of no more CTAs than rows: every CTA after its phase 3, below).
  const long long idleCtas = static_cast<long long>(gridDim.x) - a.rows;
  auto drop_logits = [&](long long part, long long parts) {
    uintptr_t first, last;
    l2_line_share(reinterpret_cast<uintptr_t>(a.logits),
                  reinterpret_cast<uintptr_t>(a.logits + static_cast<size_t>(a.rows / G) * a.heads * n), part, parts,
                  &first, &last);
    l2_discard_lines(first, last, tid, kB1Threads);
  };
  if (a.dropLogits && idleCtas > 0 && blockIdx.x >= a.rows) drop_logits(blockIdx.x - a.rows, idleCtas);

  // Phase 3: per row, the exact threshold among the candidates.
  for (long long r = blockIdx.x; r < a.rows; r += gridDim.x) {
    int* st = a.state + r * kStateInts;
    const int* cand = a.cand + r * n;
    const float* pooled = a.pooled + r * n;
    const bool listed = a.segInSmem != 0;  // pooled[i]: candidate i's score (else pooled[key])
    // Session 8: a listed list's first kSpec x 512 entries (keys and scores) are loaded beside the histogram, before
    // the count is known (entries past it are stale and dropped), so a list of up to 4096 costs no round trip of its own.
    constexpr int kSpec = 8;
    const bool spec = a.candInSmem && listed;
    int sx[kSpec];
    unsigned su[kSpec];
#pragma unroll
    for (int u = 0; u < kSpec; ++u) {
      const int i = u * kB1Threads + tid;
      const bool ok = spec && i < n && i < kB1Cand;
      sx[u] = ok ? __ldcg(cand + i) : 0;
      su[u] = ok ? __float_as_uint(__ldcg(pooled + i)) : 0u;
    }
    // One L2 round trip: the row's histogram, how many indices phase 2 wrote (final after the barrier: the
    // output slots' shared counter below starts there) and how many candidates it listed.
    for (int i = tid; i < kB1Bins; i += kB1Threads) sh[i] = __ldcg(&a.hist[r * kB1Bins + i]);
    if (tid == 0) {
      wbase[0] = __ldcg(st + 0);
      wbase[1] = __ldcg(st + 1);
      // Early sparse pass: the first wbase[0] entries (phase 2's, above the rank-k bin) are final.
      if (a.publish) b1_publish_ready(st, wbase[0]);
    }
    __syncthreads();
    select_find_from_top<kB1Threads>(sh, kB1Bins, static_cast<unsigned>(a.topk), res);
    const unsigned b1 = res[0], krem = res[1];  // the rank still wanted inside bin b1 (>= 1)
    mark(8);
    const int cnt = wbase[1];
    if (r == blockIdx.x) traceCnt = cnt;
    const bool cached = a.candInSmem && cnt <= kB1Cand;
    int from = 0;  // the first entry load_list loads (the speculative ones are kept)
    if (cached && spec) {
#pragma unroll
      for (int u = 0; u < kSpec; ++u) {
        const int i = u * kB1Threads + tid;
        if (i < cnt) {
          ccx[i] = sx[u];
          ccv[i] = su[u];
        }
      }
      from = kSpec * kB1Threads;
    }
    // The list into shared memory: kU candidates per thread at a time, their key loads and then their score loads in
    // flight together. Listed (the score at the candidate's slot), the score loads do not wait for the keys (session 8:
    // `listed` was a run-time select on the loaded key, so each round took two L2 round trips), and 8 per thread take
    // 128k batch 1's ~3100 candidates in one round.
    auto load_list = [&](auto listedTag) {
      constexpr bool kListed = decltype(listedTag)::value;
      constexpr int kU = kListed ? 8 : 4;
      for (int i0 = from; i0 < cnt; i0 += kU * kB1Threads) {
        int xs[kU];
        unsigned us[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int i = i0 + u * kB1Threads + tid;
          xs[u] = i < cnt ? __ldcg(cand + i) : 0;
        }
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int i = i0 + u * kB1Threads + tid;
          us[u] = i < cnt ? __float_as_uint(__ldcg(pooled + (kListed ? i : xs[u]))) : 0u;
        }
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int i = i0 + u * kB1Threads + tid;
          if (i < cnt) {
            ccx[i] = xs[u];
            ccv[i] = us[u];
          }
        }
      }
    };
    if (cached) {
      if (listed)
        load_list(std::true_type{});
      else
        load_list(std::false_type{});
    }
    __syncthreads();  // res is read before select_radix writes it; the cached list is complete
    mark(9);
    auto key_of = [&](int i) { return cached ? ccx[i] : __ldcg(cand + i); };
    auto bits_of = [&](int i, int x) {
      return cached ? ccv[i] : __float_as_uint(__ldcg(pooled + (listed ? i : x)));
    };
    // Digits 2 (bits 19..9) and 3 (bits 8..0) among the candidates (all share b1's bits 30..20).
    select_radix<kB1Threads>([&](int i) { return bits_of(i, cached || listed ? 0 : __ldcg(cand + i)); }, cnt, krem, sh, res,
                             1, b1);
    const unsigned prefix = res[0], want = res[1];
    mark(10);
    // prefix is the k-th score's bit pattern; `want` keys equal to it are still wanted. Only this CTA writes
    // the row now: its slots come from the shared counter wbase[0] (session 7; one global atomic per warp and
    // iteration, one after another, took ~4-5 us at 128k).
    if (tid == 0) tie = 0;
    __syncthreads();
    for (int base = warp * 32; base < cnt; base += kB1Threads) {
      const int i = base + lane;
      const int x = i < cnt ? key_of(i) : 0;
      const unsigned u = i < cnt ? bits_of(i, x) : 0u;
      const bool above = i < cnt && u > prefix;
      bool eq = i < cnt && u == prefix;
      if (eq) eq = atomicAdd(&tie, 1) < static_cast<int>(want);
      const int so = b1_slot(&wbase[0], above || eq);
      if (above || eq) a.out[r * a.topk + so] = x;
    }
    __syncthreads();
    if (a.publish && tid == 0) b1_publish_ready(st, a.topk);  // the whole list
    // Clean for the next launch: this row's histogram and counters (not the ready count, which the sparse pass reads
    // meanwhile: the next scores pass (bit 8) or the next select's memset zeroes it).
    for (int i = tid; i < kB1Bins; i += kB1Threads) a.hist[r * kB1Bins + i] = 0u;
    if (tid < kStateInts && !(a.publish && tid == kB1ReadyInt)) st[tid] = 0;
  }
  mark(5);
  if (a.dropLogits && idleCtas <= 0) drop_logits(blockIdx.x, gridDim.x);
  if (a.trace && blockIdx.x == 0 && tid == 0)
    printf("[b1_select trace] ctas %d, row 0 candidates %d: phase1 %llu ns, barrier1 %llu, phase2 %llu, barrier2 %llu, "
           "phase3 %llu (phase 2: histogram + bin %llu, reserve %llu; phase 3: histogram + bin %llu, list %llu, digits "
           "%llu; session 11: barrier 2 left at globaltimer %llu)\n",
           a.ctas, traceCnt, tr[1] - tr[0], tr[2] - tr[1], tr[3] - tr[2], tr[4] - tr[3], tr[5] - tr[4], tr[6] - tr[2],
           tr[7] - tr[6], tr[8] - tr[4], tr[9] - tr[8], tr[10] - tr[9], tr[4]);
}

cudaError_t b1_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                      cudaStream_t st, bool publish) {
  const int g = s.heads / s.kvHeads;
  B1SelectArgs a{};
  a.n = s.n;
  a.heads = s.heads;
  a.kvHeads = s.kvHeads;
  a.splits = splits;
  a.topk = topk;
  a.rows = static_cast<long long>(s.batch) * s.kvHeads;
  a.work = a.rows * s.n;
  a.logits = w.logits;
  a.part_ml = w.part_ml;
  a.pooled = w.pooled;
  a.hist = w.hist;
  a.state = w.state;
  a.cand = reinterpret_cast<int*>(w.logits + static_cast<size_t>(s.batch) * s.heads * s.n);  // after the logits
  a.out = indices;
  const char* l2 = std::getenv("KASCADE_B1_SELECT_L2");
  const char* trace = std::getenv("KASCADE_B1_SELECT_TRACE");
  const bool fromL2 = l2 && l2[0] == '1';
  a.candInSmem = !fromL2;
  a.trace = trace && trace[0] == '1';
  a.dropLogits = (s.variant & KASCADE_VARIANT_B1_L2_LOGITS) != 0;
  a.publish = publish ? 1 : 0;
  // Bit 8: the scores pass zeroed the histogram and state rows; otherwise clear them here.
  if (!(s.variant & KASCADE_VARIANT_SELECT2)) {
    cudaError_t e = cudaMemsetAsync(w.hist, 0, sizeof(unsigned) * kB1Bins * a.rows, st);
    if (e == cudaSuccess) e = cudaMemsetAsync(w.state, 0, sizeof(int) * kStateInts * a.rows, st);
    if (e != cudaSuccess) return e;
  }
  return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
    static int perSm = 0;  // CTAs resident per SM, queried once per instance
    if (perSm == 0) {
      int nb = 0;
      cudaError_t e = cudaFuncSetAttribute(b1_select_kernel<GS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(kB1Smem));
      if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, b1_select_kernel<GS>, kB1Threads, kB1Smem);
      if (e != cudaSuccess) return e;
      if (nb < 1) return cudaErrorNotSupported;
      perSm = nb;
    }
    long long ctas = static_cast<long long>(perSm) * device_sm_count();
    if (ctas > a.work) ctas = a.work;
    a.ctas = static_cast<int>(ctas);
    a.segInSmem = !fromL2 && (a.work + ctas - 1) / ctas <= kB1Seg;
    void* args[] = {&a};
    cudaError_t e = cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(b1_select_kernel<GS>),
                                                dim3(static_cast<unsigned>(a.ctas)), dim3(kB1Threads), args, kB1Smem, st);
    if (e == cudaSuccess) e = cudaGetLastError();
    return e;
  });
}

}  // namespace kascade
