// The anchors' Top-k select at small batch (KASCADE_VARIANT_SELECT_B1, cuda-b1). Two kernels: the cluster
// select (sixth session, the default; below, after the grid kernel) and, behind the tuning knob
// KASCADE_B1_SELECT=grid, the fifth session's one cooperative launch over the whole GPU, described first.
// At batch 1 the rows are few (8 KV heads) and
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
// Exactly k distinct indices per row, order free. Global traffic: the logits once, the pooled scores
// written once and read twice (L2 at batch 1), the candidates.
// The grid barrier counts in g_b1_barrier (zero at module load, back to zero after each barrier);
// ops on one stream run one at a time (as for g_split_done).
#include <cooperative_groups.h>

#include <cstdlib>
#include <cstring>

#include "decode_attention.cuh"
#include "decode_device.cuh"
#include "select_common.cuh"

namespace kascade {

constexpr int kB1Threads = 512;
constexpr int kB1Bins = kHistBins;  // 2048: the first digit, S's bits 30..20 (select_radix's first digit)

// State per row (kStateInts ints): [0] indices written, [1] candidates listed.
struct B1SelectArgs {
  int n, heads, kvHeads, splits, topk, ctas;
  long long rows, work;
  const float* logits;   // [batch x heads][n], log2-domain scaled logits
  const float* part_ml;  // [batch x heads][splits][2]
  float* pooled;         // [rows][n]
  unsigned* hist;        // [rows][kB1Bins], zero on entry
  int* state;            // [rows][kStateInts], zero on entry
  int* cand;             // [rows][n] candidate keys (the logits buffer: free once phase 1 is over)
  int* out;              // [rows][topk]
};

__device__ unsigned g_b1_barrier[2];

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

template <int GS>
__global__ void __launch_bounds__(kB1Threads) b1_select_kernel(const B1SelectArgs a) {
  __shared__ unsigned sh[kB1Bins];
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2], wcount[32];
  __shared__ int wbase[2], tie;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int n = a.n, G = a.kvHeads;
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
    // Four keys per thread at a time: their GS x 4 logit loads in flight together.
    for (int xb = x0 + tid; xb < x1; xb += 4 * kB1Threads) {
      float lg[4][GS];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int x = xb + u * kB1Threads;
#pragma unroll
        for (int h = 0; h < GS; ++h) lg[u][h] = x < x1 ? __ldg(a.logits + (bh0 + h) * n + x) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int x = xb + u * kB1Threads;
        if (x >= x1) break;
        float S = 0.f;
#pragma unroll
        for (int h = 0; h < GS; ++h) S += exp2f(lg[u][h] - Mh[h]) * iL[h];
        a.pooled[r * n + x] = S;
        atomicAdd(&sh[__float_as_uint(S) >> 20], 1u);
      }
    }
    __syncthreads();
    for (int i = tid; i < kB1Bins; i += kB1Threads)
      if (sh[i]) atomicAdd(&a.hist[r * kB1Bins + i], sh[i]);
    __syncthreads();
    t = (r + 1) * n;
  }
  grid_barrier(g_b1_barrier);

  // Phase 2: keys above the rank-k bin -> indices, keys in it -> the candidate list.
  for (long long t = t0; t < t1;) {
    const long long r = t / n;
    const int x0 = static_cast<int>(t - r * n);
    const int x1 = static_cast<int>(min(t1 - r * n, static_cast<long long>(n)));
    for (int i = tid; i < kB1Bins; i += kB1Threads) sh[i] = __ldcg(&a.hist[r * kB1Bins + i]);
    __syncthreads();
    select_find_from_top<kB1Threads>(sh, kB1Bins, static_cast<unsigned>(a.topk), res);
    const unsigned b1 = res[0];
    int* st = a.state + r * kStateInts;
    // Two walks over the segment by whole warps: count each warp's keys above b1 and in it, reserve the
    // CTA's output and candidate ranges with one atomic each (33 CTAs per row at batch 1 128k: per-warp
    // atomics on the row's two counters serialised), then write at the warps' offsets in key order.
    auto walk = [&](auto emit) {
      for (int base = x0 + warp * 32; base < x1; base += kB1Threads) {
        const int x = base + lane;
        const unsigned bin = x < x1 ? (__float_as_uint(__ldcg(&a.pooled[r * n + x])) >> 20) : 0u;
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
    int oa = wbase[0] + static_cast<int>(wcount[warp]), oi = wbase[1] + static_cast<int>(wcount[16 + warp]);
    const unsigned below = (1u << lane) - 1u;
    walk([&](int x, unsigned ma, unsigned mi) {
      if (ma >> lane & 1u) a.out[r * a.topk + oa + __popc(ma & below)] = x;
      if (mi >> lane & 1u) a.cand[r * n + oi + __popc(mi & below)] = x;
      oa += __popc(ma);
      oi += __popc(mi);
    });
    __syncthreads();
    t = (r + 1) * n;
  }
  grid_barrier(g_b1_barrier);

  // Phase 3: per row, the exact threshold among the candidates.
  for (long long r = blockIdx.x; r < a.rows; r += gridDim.x) {
    int* st = a.state + r * kStateInts;
    for (int i = tid; i < kB1Bins; i += kB1Threads) sh[i] = __ldcg(&a.hist[r * kB1Bins + i]);
    __syncthreads();
    select_find_from_top<kB1Threads>(sh, kB1Bins, static_cast<unsigned>(a.topk), res);
    const unsigned b1 = res[0], krem = res[1];  // the rank still wanted inside bin b1 (>= 1)
    const int cnt = __ldcg(st + 1);
    const int* cand = a.cand + r * n;
    const float* pooled = a.pooled + r * n;
    __syncthreads();  // res is read before select_radix writes it
    // Digits 2 (bits 19..9) and 3 (bits 8..0) among the candidates (all share b1's bits 30..20).
    select_radix<kB1Threads>([&](int i) { return __float_as_uint(__ldcg(pooled + __ldcg(cand + i))); }, cnt, krem,
                             sh, res, 1, b1);
    const unsigned prefix = res[0], want = res[1];
    // prefix is the k-th score's bit pattern; `want` keys equal to it are still wanted.
    if (tid == 0) tie = 0;
    __syncthreads();
    for (int base = warp * 32; base < cnt; base += kB1Threads) {
      const int i = base + lane;
      const int x = i < cnt ? __ldcg(cand + i) : 0;
      const unsigned u = i < cnt ? __float_as_uint(__ldcg(pooled + x)) : 0u;
      const bool above = i < cnt && u > prefix;
      bool eq = i < cnt && u == prefix;
      if (eq) eq = atomicAdd(&tie, 1) < static_cast<int>(want);
      const int so = b1_slot(st + 0, above || eq);
      if (above || eq) a.out[r * a.topk + so] = x;
    }
    __syncthreads();
    // Clean for the next launch: this row's histogram and counters.
    for (int i = tid; i < kB1Bins; i += kB1Threads) a.hist[r * kB1Bins + i] = 0u;
    if (tid < kStateInts) st[tid] = 0;
  }
}

// ---------------------------------------------------------------------------------------------------
// The cluster select (the default of bit 131072 since session 6; the grid kernel above runs with
// KASCADE_B1_SELECT=grid, a tuning knob read per call): each (sequence, KV head) row is one thread-block
// cluster of C CTAs (C = 16 where the GPU allows, so 8 rows fill ~128 SMs at batch 1), CTA q of the
// cluster owning keys [q chunk, (q + 1) chunk). The row stays on chip:
//   1. the row's per-head softmax max and sum; the pooled scores of the CTA's keys into shared memory
//      (global `pooled` where the chunk does not fit) and the first digit's histogram (bits 30..20);
//   2. three digits (bits 30..20, 19..9, 8..0): each CTA adds its non-zero bins to CTA 0's merged
//      histogram of the digit through distributed shared memory, a cluster barrier, every CTA finds the
//      bin holding the rank still wanted in CTA 0's merged histogram; the next digit counts only the
//      CTA's keys whose bits above it match the prefix so far;
//   3. the k-th score T: every CTA publishes how many of its keys are above T and equal to T, reads the
//      lower ranks' counts (a cluster barrier) and writes its keys above T, then its share of the ties
//      (the lowest ranks' ties first), at its offsets; order inside a CTA free (shared counters).
// No global atomics, no grid barrier, no host memsets; the logits are read once.
constexpr int kB1cThreads = 512;
constexpr int kB1cMerged = 2 * kHistBins + 512;  // the three digits' merged histograms (CTA 0's)
constexpr int kB1cFixedBytes = static_cast<int>(sizeof(unsigned)) * (kHistBins + kB1cMerged);

struct B1ClusterArgs {
  int n, heads, kvHeads, splits, topk, chunk;
  const float* logits;   // [batch x heads][n]
  const float* part_ml;  // [batch x heads][splits][2]
  float* pooled;         // [rows][n]: the pooled scores where a chunk does not fit shared memory
  int* out;              // [rows][topk]
};

template <int GS, bool kSmem>
__global__ void __launch_bounds__(kB1cThreads) b1_cluster_select_kernel(const B1ClusterArgs a) {
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  extern __shared__ __align__(16) unsigned char b1c_smem[];
  unsigned* loc = reinterpret_cast<unsigned*>(b1c_smem);  // [kHistBins] this CTA's histogram / a copy
  unsigned* merged = loc + kHistBins;                     // [kB1cMerged]
  float* svals = reinterpret_cast<float*>(merged + kB1cMerged);
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2], cnt[2], slot[2], wsum[kB1cThreads / 32];
  __shared__ int base[3];
  const int tid = static_cast<int>(threadIdx.x);
  const int C = static_cast<int>(cluster.num_blocks()), q = static_cast<int>(cluster.block_rank());
  const long long r = blockIdx.x / C;
  const int n = a.n, G = a.kvHeads, k = a.topk;
  const int x0 = min(n, q * a.chunk), len = min(n, x0 + a.chunk) - x0;
  float* vals = kSmem ? svals : a.pooled + r * n + x0;
  const size_t bh0 = static_cast<size_t>(r / G) * a.heads + static_cast<size_t>(r % G) * GS;

  for (int i = tid; i < kHistBins + kB1cMerged; i += kB1cThreads) loc[i] = 0u;
  if (tid < 2) cnt[tid] = slot[tid] = 0u;
  head_softmax_stats<GS, kB1cThreads>(a.part_ml + bh0 * a.splits * 2, a.splits, Mh, iL);
  // 1. Pool; four keys per thread at a time (their GS x 4 logit loads in flight together).
  for (int b = 0; b < len; b += 4 * kB1cThreads) {
    float lg[4][GS];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = b + u * kB1cThreads + tid;
#pragma unroll
      for (int h = 0; h < GS; ++h) lg[u][h] = i < len ? __ldg(a.logits + (bh0 + h) * n + x0 + i) : 0.f;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = b + u * kB1cThreads + tid;
      float S = 0.f;
#pragma unroll
      for (int h = 0; h < GS; ++h) S += exp2f(lg[u][h] - Mh[h]) * iL[h];
      if (i < len) vals[i] = S;
      warp_hist_add(loc, __float_as_uint(S) >> 20, i < len);
    }
  }
  // 2. Three digits.
  unsigned* root = cluster.map_shared_rank(merged, 0);
  unsigned prefix = 0u, krem = static_cast<unsigned>(k);
#pragma unroll 1
  for (int level = 0; level < 3; ++level) {
    const int shift = level == 0 ? 20 : level == 1 ? 9 : 0, nb = level == 2 ? 512 : kHistBins;
    const int hiShift = shift + (level == 2 ? 9 : 11);
    unsigned* m = root + (level == 0 ? 0 : level == 1 ? kHistBins : 2 * kHistBins);
    if (level > 0) {
      for (int i = tid; i < nb; i += kB1cThreads) loc[i] = 0u;
      __syncthreads();
      for (int b = 0; b < len; b += kB1cThreads) {
        const int i = b + tid;
        const unsigned u = i < len ? __float_as_uint(vals[i]) : 0u;
        warp_hist_add(loc, (u >> shift) & static_cast<unsigned>(nb - 1), i < len && (u >> hiShift) == prefix);
      }
    }
    cluster.sync();  // every CTA's merged histograms zeroed (level 0) and local histogram complete
    for (int i = tid; i < nb; i += kB1cThreads)
      if (loc[i]) atomicAdd(m + i, loc[i]);
    cluster.sync();  // the merged histogram complete
    select_rank_bin<kB1cThreads>([m](int b) { return m[b]; }, nb, krem, wsum, res);  // reads CTA 0's bins
    prefix = (prefix << (level == 2 ? 9 : 11)) | res[0];
    krem = res[1];
  }
  // 3. T = prefix: krem keys equal to T are wanted, k - krem keys lie above it.
  {
    unsigned na = 0, ne = 0;
    for (int i = tid; i < len; i += kB1cThreads) {
      const unsigned u = __float_as_uint(vals[i]);
      na += u > prefix;
      ne += u == prefix;
    }
    for (int o = 16; o > 0; o >>= 1) {
      na += __shfl_xor_sync(0xffffffffu, na, o);
      ne += __shfl_xor_sync(0xffffffffu, ne, o);
    }
    if ((tid & 31) == 0) {
      if (na) atomicAdd(&cnt[0], na);
      if (ne) atomicAdd(&cnt[1], ne);
    }
  }
  cluster.sync();  // every CTA's counts published
  if (tid == 0) {
    unsigned pa = 0, pe = 0;
    for (int j = 0; j < q; ++j) {
      const unsigned* c = cluster.map_shared_rank(cnt, j);
      pa += c[0];
      pe += c[1];
    }
    base[0] = static_cast<int>(pa);
    base[1] = k - static_cast<int>(krem) + static_cast<int>(pe);
    base[2] = pe >= krem ? 0 : static_cast<int>(min(cnt[1], krem - pe));  // ties this CTA writes
  }
  __syncthreads();
  int* out = a.out + r * k;
  for (int b = 0; b < len; b += kB1cThreads) {
    const int i = b + tid;
    const unsigned u = i < len ? __float_as_uint(vals[i]) : 0u;
    const bool above = i < len && u > prefix, eq = i < len && u == prefix;
    const unsigned ma = __ballot_sync(0xffffffffu, above), me = __ballot_sync(0xffffffffu, eq);
    const int lane = tid & 31, leader = 0;
    unsigned sa = 0, se = 0;
    if (lane == leader) {
      if (ma) sa = atomicAdd(&slot[0], __popc(ma));
      if (me) se = atomicAdd(&slot[1], __popc(me));
    }
    sa = __shfl_sync(0xffffffffu, sa, leader) + __popc(ma & ((1u << lane) - 1u));
    se = __shfl_sync(0xffffffffu, se, leader) + __popc(me & ((1u << lane) - 1u));
    if (above) out[base[0] + static_cast<int>(sa)] = x0 + i;
    if (eq && static_cast<int>(se) < base[2]) out[base[1] + static_cast<int>(se)] = x0 + i;
  }
  cluster.sync();  // no CTA leaves while another may still read its counts
}

// Launches the cluster select; cudaErrorNotSupported where no cluster of the needed shape fits.
template <int GS>
static cudaError_t launch_b1_cluster(const B1ClusterArgs& a0, long long rows, bool forceGlobal, cudaStream_t st) {
  static int maxC = 0, maxSmem = 0;  // per instance: the largest cluster allowed, the opt-in shared memory
  if (maxC == 0) {
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&maxSmem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) return e;
    maxC = 8;
    if (cudaFuncSetAttribute(b1_cluster_select_kernel<GS, true>, cudaFuncAttributeNonPortableClusterSizeAllowed,
                             1) == cudaSuccess &&
        cudaFuncSetAttribute(b1_cluster_select_kernel<GS, false>, cudaFuncAttributeNonPortableClusterSizeAllowed,
                             1) == cudaSuccess)
      maxC = 16;
    cudaGetLastError();
  }
  B1ClusterArgs a = a0;
  // Clusters of up to 16 CTAs, at least ~1024 keys per CTA.
  int C = 1;
  while (C < maxC && static_cast<long long>(a.n) > 1024LL * C) C *= 2;
  a.chunk = ceil_div(a.n, C);
  const size_t smemFit = static_cast<size_t>(kB1cFixedBytes) + sizeof(float) * static_cast<size_t>(a.chunk);
  const bool inSmem = !forceGlobal && smemFit <= static_cast<size_t>(maxSmem);
  const size_t smem = inSmem ? smemFit : static_cast<size_t>(kB1cFixedBytes);
  if (rows * C > 0x7fffffffLL) return cudaErrorInvalidValue;
  const void* fn = inSmem ? reinterpret_cast<const void*>(b1_cluster_select_kernel<GS, true>)
                          : reinterpret_cast<const void*>(b1_cluster_select_kernel<GS, false>);
  static size_t smemSet[2] = {0, 0};  // the dynamic shared memory each kernel is allowed so far
  if (smem > 48 * 1024 && smem > smemSet[inSmem]) {
    const cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    smemSet[inSmem] = smem;
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(rows * C));
  cfg.blockDim = dim3(kB1cThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(C);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  void* args[] = {const_cast<B1ClusterArgs*>(&a)};
  cudaError_t e = cudaLaunchKernelExC(&cfg, fn, args);
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e != cudaSuccess && C > 8 && maxC > 8) {
    // A 16-CTA cluster refused here: clusters of 8 from now on.
    cudaGetLastError();
    maxC = 8;
    return launch_b1_cluster<GS>(a0, rows, forceGlobal, st);
  }
  return e;
}

cudaError_t b1_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                      cudaStream_t st) {
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
  a.cand = reinterpret_cast<int*>(w.logits);  // [rows][n] ints fit in [batch x heads][n] floats
  a.out = indices;
  // The cluster select unless KASCADE_B1_SELECT=grid (tuning: the grid kernel above, read per call);
  // KASCADE_B1_SELECT=global keeps the cluster select's pooled scores in global memory, as beyond ~800k keys.
  const char* mode = std::getenv("KASCADE_B1_SELECT");
  const bool forceGlobal = mode && std::strcmp(mode, "global") == 0;
  if (!(mode && std::strcmp(mode, "grid") == 0)) {
    B1ClusterArgs c{};
    c.n = s.n;
    c.heads = s.heads;
    c.kvHeads = s.kvHeads;
    c.splits = splits;
    c.topk = topk;
    c.logits = w.logits;
    c.part_ml = w.part_ml;
    c.pooled = w.pooled;
    c.out = indices;
    return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t { return launch_b1_cluster<GS>(c, a.rows, forceGlobal, st); });
  }
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
      cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, b1_select_kernel<GS>, kB1Threads, 0);
      if (e != cudaSuccess) return e;
      if (nb < 1) return cudaErrorNotSupported;
      perSm = nb;
    }
    long long ctas = static_cast<long long>(perSm) * device_sm_count();
    if (ctas > a.work) ctas = a.work;
    a.ctas = static_cast<int>(ctas);
    void* args[] = {&a};
    cudaError_t e = cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(b1_select_kernel<GS>),
                                                dim3(static_cast<unsigned>(a.ctas)), dim3(kB1Threads), args, 0, st);
    if (e == cudaSuccess) e = cudaGetLastError();
    return e;
  });
}

}  // namespace kascade
