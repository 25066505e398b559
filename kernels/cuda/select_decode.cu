// Cluster Top-k select of the decode anchors (variant bits 256 / 512: one kernel, cluster_select2_kernel):
// pooling, the three radix digits and the compaction in ONE launch, one thread block cluster per
// (sequence, KV head) row; and the stream select (bit 2048, below).
//
// The multi-pass select (anchor_decode.cu) costs five launches and reads the pooled row from global
// memory four times; at batch 1 its grid is 64 CTAs (ncu: ~38 us at 128k), at batch 32 it moves
// ~1.1 GB (~400 us at 128k). Here each CTA of a row's cluster owns a contiguous slice of the row:
//  1. pools its slice of the logits (S(x) = sum_h exp2(l_h(x) - M_h) / L_h, the same arithmetic as
//     pool_hist_kernel) into shared memory (or, for slices too long for it, the workspace's pooled
//     row) and histograms the top 11 bits of the key (the score's bit pattern without the sign:
//     S >= 0, so it orders like the value; 8 exponent + 3 mantissa bits);
//  2. adds its histogram into the cluster's (CTA 0's shared memory, through DSMEM atomics); after a
//     cluster barrier every CTA scans the cluster histogram itself for the bin holding rank k;
//  3. the same for the next 11 bits and the last 9 bits of the keys in the chosen prefix, read from
//     the slice it kept: the exact k-th key `thr` and the number `r` of keys equal to it to take;
//  4. writes the keys above `thr` and the first `r` keys equal to it by position (ties at the k-th
//     value go to the lower index, as in the spec); details at the kernel.
// Global memory traffic: the logits once (plus, only for slices kept in global memory, the pooled
// slice written once and read from L2 three more times) and the k indices; six cluster barriers.
// (Session 5: the first version, bit 256 alone until then, was removed: the second one was 4-9 %
// faster in the third session's call C and is the one every default names.)
#include <cooperative_groups.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "decode_device.cuh"
#include "select_common.cuh"
#include "select_decode.cuh"

namespace cg = cooperative_groups;

namespace kascade {

struct ClusterSelectArgs {
  int n;
  int heads;
  int kvHeads;
  int splits;
  int topk;
  int slice;
  int inSmem;
  const float* logits;   // [batch, heads, n], log2-domain scaled logits
  const float* part_ml;  // [batch, heads, splits, 2] per-split max / sum
  float* pooled;         // [rows, n]: slice storage when it does not fit shared memory
  int* out;              // [rows, topk]
};

__device__ __forceinline__ unsigned select_key(float x) { return __float_as_uint(x) & 0x7fffffffu; }

// Adds this CTA's histogram into the cluster's (CTA 0's `dst`), then waits for the whole cluster.
__device__ __forceinline__ void select_flush(cg::cluster_group& cluster, const unsigned* loc, unsigned* dst) {
  __syncthreads();
  for (int i = threadIdx.x; i < kSelectBins; i += kSelectThreads)
    if (loc[i]) atomicAdd(dst + i, loc[i]);
  cluster.sync();
}

// ---------------------------------------------------------------------------------------------
// The cluster select's kernel (bits 256 and 512; "version 2" of the third session, 4-9 % faster than the
// removed first version in its call C (ncu); latency-bound: 2 CTAs per SM, six cluster barriers per CTA):
//  - histograms by plain shared-memory atomics (no ballot / match per score), exp2 as one ex2.approx.ftz;
//  - the keys above the threshold are counted inside the digit passes (above bin b1 in the digit-2
//    pass, above b2 inside b1 in the digit-3 pass, above b3 from the CTA's own digit-3 histogram),
//    so there is no counting pass;
//  - keys above the threshold take slots by one shared atomic per warp step (their order is free);
//    keys equal to it keep the lower-index rule: a CTA whose ties all fit takes slots the same way,
//    only the one CTA whose ties straddle the cut counts them per warp first and writes them in order.
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Sum over the CTA of one value per thread (kSelectThreads threads); every thread gets it.
__device__ __forceinline__ unsigned select_block_sum(unsigned v, unsigned* wsum) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = __reduce_add_sync(0xffffffffu, v);
  __syncthreads();  // earlier readers of wsum are done
  if (lane == 0) wsum[warp] = v;
  __syncthreads();
  unsigned t = 0;
#pragma unroll
  for (int w = 0; w < kSelectWarps; ++w) t += wsum[w];
  return t;
}

template <int GS, bool VEC>
__global__ void __launch_bounds__(kSelectThreads) cluster_select2_kernel(const ClusterSelectArgs a) {
  extern __shared__ __align__(16) unsigned char select_smem[];
  unsigned* loc = reinterpret_cast<unsigned*>(select_smem);  // this CTA's histogram of the current digit
  unsigned* tot = loc + kSelectBins;                          // [3][kSelectBins]: CTA 0's hold the cluster's
  float* sliceSmem = reinterpret_cast<float*>(tot + 3 * kSelectBins);
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned wsum[kSelectWarps];
  __shared__ unsigned res[2];
  __shared__ unsigned above12;  // keys above the threshold found by the digit passes
  __shared__ int ctaCnt[2];     // published: keys above the threshold, keys equal to it
  __shared__ int base[2];
  __shared__ int slotA, slotE;
  __shared__ int warpE[kSelectWarps];

  cg::cluster_group cluster = cg::this_cluster();
  const int C = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int row = static_cast<int>(blockIdx.x) / C;
  const int b = row / a.kvHeads, j = row % a.kvHeads;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = a.n;

  for (int i = tid; i < 4 * kSelectBins; i += kSelectThreads) loc[i] = 0u;  // loc and the three tot
  if (tid == 0) {
    above12 = 0u;
    slotA = 0;
    slotE = 0;
  }
  const size_t bh0 = static_cast<size_t>(b) * a.heads + static_cast<size_t>(j) * GS;
  head_softmax_stats<GS, kSelectThreads>(a.part_ml + bh0 * a.splits * 2, a.splits, Mh, iL);
  cluster.sync();  // every CTA's histograms are zero before any remote add; Mh / iL visible

  const int start = rank * a.slice;
  const int cnt = max(0, min(n - start, a.slice));
  float* store = a.inSmem ? sliceSmem : a.pooled + static_cast<size_t>(row) * n + start;
  const int W = a.slice / kSelectWarps;
  const int wb = warp * W, we = min(wb + W, cnt);
  const float* lg = a.logits + bh0 * n + start;
  float mh[GS], il[GS];
#pragma unroll
  for (int h = 0; h < GS; ++h) {
    mh[h] = Mh[h];
    il[h] = iL[h];
  }

  // 1. Pool this slice, keep it, histogram digit 1 (key bits 30..20).
  if constexpr (VEC) {
    constexpr int U = GS >= 8 ? 1 : 8 / GS;  // float4 loads in flight per lane: 8
    for (int s0 = wb; s0 < we; s0 += 128 * U) {
      float4 v[U][GS];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int e = s0 + u * 128 + lane * 4;
#pragma unroll
        for (int h = 0; h < GS; ++h)
          v[u][h] = e < we ? __ldcs(reinterpret_cast<const float4*>(lg + static_cast<size_t>(h) * n + e))
                           : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int e = s0 + u * 128 + lane * 4;
        if (e < we) {
          float4 S = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
          for (int h = 0; h < GS; ++h) {
            S.x = fmaf(ex2_ftz(v[u][h].x - mh[h]), il[h], S.x);
            S.y = fmaf(ex2_ftz(v[u][h].y - mh[h]), il[h], S.y);
            S.z = fmaf(ex2_ftz(v[u][h].z - mh[h]), il[h], S.z);
            S.w = fmaf(ex2_ftz(v[u][h].w - mh[h]), il[h], S.w);
          }
          *reinterpret_cast<float4*>(store + e) = S;
          atomicAdd(&loc[select_key(S.x) >> 20], 1u);
          atomicAdd(&loc[select_key(S.y) >> 20], 1u);
          atomicAdd(&loc[select_key(S.z) >> 20], 1u);
          atomicAdd(&loc[select_key(S.w) >> 20], 1u);
        }
      }
    }
  } else {
    constexpr int U = 4;
    for (int s0 = wb; s0 < we; s0 += 32 * U) {
      float v[U][GS];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int e = s0 + u * 32 + lane;
#pragma unroll
        for (int h = 0; h < GS; ++h) v[u][h] = e < we ? __ldcs(lg + static_cast<size_t>(h) * n + e) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int e = s0 + u * 32 + lane;
        if (e < we) {
          float S = 0.f;
#pragma unroll
          for (int h = 0; h < GS; ++h) S = fmaf(ex2_ftz(v[u][h] - mh[h]), il[h], S);
          store[e] = S;
          atomicAdd(&loc[select_key(S) >> 20], 1u);
        }
      }
    }
  }
  unsigned* tot0 = cluster.map_shared_rank(tot, 0);
  select_flush(cluster, loc, tot0);
  select_rank_bin<kSelectThreads>([tot0](int bin) { return tot0[bin]; }, kSelectBins, static_cast<unsigned>(a.topk),
                                  wsum, res);
  const unsigned b1 = res[0];
  unsigned krem = res[1];

  // 2. Digit 2 (key bits 19..9) of the keys in bin b1; counts the keys above bin b1.
  for (int i = tid; i < kSelectBins; i += kSelectThreads) loc[i] = 0u;
  __syncthreads();
  unsigned above = 0;
  for (int s0 = wb; s0 < we; s0 += 32 * 4) {
    unsigned k[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int e = s0 + u * 32 + lane;
      k[u] = e < we ? select_key(store[e]) : 0u;  // key 0 is never above b1's bins nor in b1 unless b1 == 0
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const bool in = s0 + u * 32 + lane < we;
      const unsigned d1 = k[u] >> 20;
      above += (in && d1 > b1) ? 1u : 0u;
      if (in && d1 == b1) atomicAdd(&loc[(k[u] >> 9) & 0x7ffu], 1u);
    }
  }
  above = __reduce_add_sync(0xffffffffu, above);
  if (lane == 0 && above) atomicAdd(&above12, above);
  select_flush(cluster, loc, tot0 + kSelectBins);
  select_rank_bin<kSelectThreads>([tot0](int bin) { return tot0[kSelectBins + bin]; }, kSelectBins, krem, wsum, res);
  const unsigned b2 = res[0];
  const unsigned prefix2 = (b1 << 11) | b2;
  krem = res[1];

  // 3. Digit 3 (key bits 8..0) of the keys with that 22-bit prefix; counts those in b1 above b2.
  for (int i = tid; i < kSelectBins; i += kSelectThreads) loc[i] = 0u;
  __syncthreads();
  above = 0;
  for (int s0 = wb; s0 < we; s0 += 32 * 4) {
    unsigned k[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int e = s0 + u * 32 + lane;
      k[u] = e < we ? select_key(store[e]) : 0u;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const bool in = s0 + u * 32 + lane < we;
      const unsigned d12 = k[u] >> 9;
      above += (in && (k[u] >> 20) == b1 && d12 > prefix2) ? 1u : 0u;
      if (in && d12 == prefix2) atomicAdd(&loc[k[u] & 0x1ffu], 1u);
    }
  }
  above = __reduce_add_sync(0xffffffffu, above);
  if (lane == 0 && above) atomicAdd(&above12, above);
  select_flush(cluster, loc, tot0 + 2 * kSelectBins);
  select_rank_bin<kSelectThreads>([tot0](int bin) { return tot0[2 * kSelectBins + bin]; }, 512, krem, wsum, res);
  const unsigned b3 = res[0];
  const unsigned thr = (prefix2 << 9) | b3;
  const int take = static_cast<int>(res[1]);  // keys equal to thr still wanted (>= 1)

  // 4. This CTA's totals from its own digit-3 histogram (loc, still intact) and the digit passes.
  const unsigned a3 = select_block_sum(static_cast<unsigned>(tid) > b3 && tid < 512 ? loc[tid] : 0u, wsum);
  if (tid == 0) {
    ctaCnt[0] = static_cast<int>(above12 + a3);
    ctaCnt[1] = static_cast<int>(loc[b3]);
  }
  cluster.sync();
  if (tid < 2) {
    int sum = 0;
    for (int r = 0; r < rank; ++r) sum += cluster.map_shared_rank(ctaCnt, r)[tid];
    base[tid] = sum;
  }
  __syncthreads();
  const int aboveTotal = a.topk - take;
  const int eqBase = base[1], eqCount = ctaCnt[1];
  // Ties: none from this CTA, all of them (any order), or only the lower ones (in index order).
  const bool tiesAll = eqCount > 0 && eqBase + eqCount <= take;
  const bool tiesOrdered = eqBase < take && eqBase + eqCount > take;
  if (tiesOrdered) {  // CTA-uniform: per-warp counts of the ties, then their exclusive prefix
    int ce = 0;
    for (int e = wb + lane; e < we; e += 32) ce += select_key(store[e]) == thr ? 1 : 0;
    ce = __reduce_add_sync(0xffffffffu, ce);
    if (lane == 0) warpE[warp] = ce;
    __syncthreads();
    if (tid == 0) {
      int t = 0;
      for (int w = 0; w < kSelectWarps; ++w) {
        const int x = warpE[w];
        warpE[w] = t;
        t += x;
      }
    }
    __syncthreads();
  }

  // 5. Write: keys above thr in slots [0, aboveTotal), ties after them.
  int* o = a.out + static_cast<size_t>(row) * a.topk;
  const unsigned lt = (1u << lane) - 1u;
  int pe = tiesOrdered ? eqBase + warpE[warp] : 0;
  for (int s0 = wb; s0 < we; s0 += 32) {
    const int e = s0 + lane;
    const bool in = e < we;
    const unsigned k = in ? select_key(store[e]) : 0u;
    const bool up = in && k > thr, eq = in && k == thr;
    const unsigned mu = __ballot_sync(0xffffffffu, up);
    if (mu) {
      int s = 0;
      if (lane == __ffs(mu) - 1) s = atomicAdd(&slotA, __popc(mu));
      s = __shfl_sync(0xffffffffu, s, __ffs(mu) - 1);
      if (up) o[base[0] + s + __popc(mu & lt)] = start + e;
    }
    const unsigned me = __ballot_sync(0xffffffffu, eq);
    if (me && tiesAll) {
      int s = 0;
      if (lane == __ffs(me) - 1) s = atomicAdd(&slotE, __popc(me));
      s = __shfl_sync(0xffffffffu, s, __ffs(me) - 1);
      if (eq) o[aboveTotal + eqBase + s + __popc(me & lt)] = start + e;
    } else if (me && tiesOrdered) {
      const int t = pe + __popc(me & lt);
      if (eq && t < take) o[aboveTotal + t] = start + e;
      pe += __popc(me);
    }
  }
  cluster.sync();  // no CTA leaves while another may still read its ctaCnt
}

template <int GS, bool VEC>
static cudaError_t cluster_select_t(const SelectPlan& p, long long rows, const ClusterSelectArgs& a,
                                    cudaStream_t st) {
  auto* kern = cluster_select2_kernel<GS, VEC>;
  static bool configured = false;
  static std::map<long long, int> activeClusters;  // (cluster, smem bytes) -> clusters that fit at once
  if (!configured) {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kSelectFixedSmem + sizeof(float) * select_limits(true).sliceMax));
    if (e == cudaSuccess) e = cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return cudaErrorNotSupported;
    }
    configured = true;
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(p.cluster);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(p.cluster * rows), 1, 1);
  cfg.blockDim = dim3(kSelectThreads, 1, 1);
  cfg.dynamicSmemBytes = p.smemBytes;
  cfg.stream = st;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const long long key = static_cast<long long>(p.cluster) << 32 | static_cast<long long>(p.smemBytes);
  auto it = activeClusters.find(key);
  if (it == activeClusters.end()) {
    int num = 0;
    if (cudaOccupancyMaxActiveClusters(&num, kern, &cfg) != cudaSuccess) {
      cudaGetLastError();
      num = 0;
    }
    it = activeClusters.emplace(key, num).first;
  }
  if (it->second < 1) return cudaErrorNotSupported;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kern, a);
  return e != cudaSuccess ? e : cudaGetLastError();
}

cudaError_t cluster_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                           cudaStream_t st) {
  // The cluster select pools f32 logits; over KASCADE_VARIANT_U16's f16 intermediate the caller runs the
  // multi-pass (or stream) select instead.
  if (s.variant & KASCADE_VARIANT_U16) return cudaErrorNotSupported;
  const long long rows = static_cast<long long>(s.batch) * s.kvHeads;
  const int g = s.heads / s.kvHeads;
  const bool vec = s.n % 4 == 0;
  ClusterSelectArgs a{};
  a.n = s.n;
  a.heads = s.heads;
  a.kvHeads = s.kvHeads;
  a.splits = splits;
  a.topk = topk;
  a.logits = w.logits;
  a.part_ml = w.part_ml;
  a.pooled = w.pooled;
  a.out = indices;
  // The plain plan (the third session's call B: 16-CTA clusters ran 1.2-2.6x slower than 8-CTA ones).
  const SelectPlan p = select_plan(s.n, rows, device_sm_count(), select_limits(false));
  if (p.cluster * rows > 0x7fffffffLL) return cudaErrorNotSupported;
  a.slice = p.slice;
  a.inSmem = p.inSmem ? 1 : 0;
  return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
    return vec ? cluster_select_t<GS, true>(p, rows, a, st) : cluster_select_t<GS, false>(p, rows, a, st);
  });
}

// ---------------------------------------------------------------------------------------------------
// KASCADE_VARIANT_STREAM_SELECT: the whole select as one cooperative launch (select_decode.cuh).
//   phase 0  clear the rows' 4096-bin histograms;                                        grid barrier
//   phase 1  CTA c takes tiles [c W / P, (c + 1) W / P) of the rows' 2048-key tiles laid end to end:
//            per row segment the heads' global softmax max/sum (from the scores pass's per-split
//            max/sum), then per key the pooled score S(x) = sum_h exp2(l_h(x) - M_h) / L_h from the
//            f32 logits, or (bit 1024) S(x) = sum_h u_h(x) exp2(m16_h - M_h) / L_h from the f16
//            intermediate (8 keys per thread, one 16-byte load of u per head), written to the pooled
//            row (f32, stride u16_stride(n)), and a shared 4096-bin histogram of bits 30..19 of S
//            (S >= 0: the sign bit is 0; 8 exponent + 4 mantissa bits, 16 bins per octave), flushed
//            to the row's global histogram;                                              barrier
//   phase 2  per row (CTA r, r + P, ...): the bin b1 holding rank k from the top -> state; barrier
//   phase 3  the same tiles again over the pooled rows: keys above the row's list bins go to indices,
//            the list bins' members to the row's list (warp-aggregated slots). List bins: b1; with
//            bit 1024 the bins the window below can reach around b1 (usually b1 - 1 .. b1 + 1); barrier
//   phase 4  per row: an exact radix select (digits of 11, 11, 9 bits) over the listed scores (kept
//            beside the keys by phase 3; in shared memory when they fit).
//            f32 logits: that is the answer. Bit 1024: S carries the f16 rounding of u (relative
//            error <= 2^-11, plus an absolute 2^-40 per head below f16's normal range), so around the
//            listed k-th score a_k the keys with S in [a_k (1 - W) - A, a_k (1 + W) + A] (select_plan.h)
//            are recomputed exactly (q . k from the K cache, one
//            warp per key; their pooled entries overwritten) and a second radix select over them
//            picks the rest; keys above the window are in, keys below it out (provably, for any
//            rounding within half the window).
// State per row: [0] b1, [1] rank still wanted among the listed keys, [2] keys written, [3] list length,
// [4] / [5] the lowest / highest list bin; [7] (bit 134217728, cuda-anchor, session 10) the ready count of the row's
// index list (entries written + 1; zeroed in phase 0, published after phase 3 and after the row's phase 4 with
// st.release), read by the anchor's sparse pass, which phase 3's end releases (griddepcontrol.launch_dependents) to run
// beside phase 4; the rows' softmax max / 1 / sum then come from their histogram rows, where phase 2 kept them (the
// sparse pass overwrites part_ml).
// The grid barrier (grid_barrier, decode_device.cuh) counts in g_stream_barrier;
// ops on one stream run one at a time (as for g_split_done).
__device__ unsigned g_stream_barrier[2];

// The trace's slots: start, after phases 0, 1, 2, 3, and CTA 0's end of phase 4.
constexpr int kStreamTraceSlots = 6;

#define STREAM_TRACE(i) \
  if (a.trace && blockIdx.x == 0 && threadIdx.x == 0) a.trace[i] = clock64()

template <typename T, int D, int GS>
// Three CTAs per SM (at most 85 registers): phase 1 streams with 24 warps per SM (at 107 registers, two).
__global__ void __launch_bounds__(kStreamThreads, 3) stream_select_kernel(const StreamSelectArgs a) {
  extern __shared__ __align__(16) unsigned char stream_smem[];
  unsigned* sh = reinterpret_cast<unsigned*>(stream_smem);         // [kStreamBins]
  float* cache = reinterpret_cast<float*>(sh + kStreamBins);       // [kStreamCache]
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2];
  __shared__ int cnt[3];
  const int tid = threadIdx.x;
  const int n = a.n, nU = a.nU, G = a.kvHeads, H = a.heads, k = a.topk;
  const long long P = gridDim.x;
  const bool u16 = a.u16 != 0;

  // The heads' global softmax max and 1 / sum of row `row` into Mh / iL (all threads call).
  auto row_stats = [&](long long row) {
    const int b = static_cast<int>(row / G), j = static_cast<int>(row % G);
    const size_t bh0 = static_cast<size_t>(b) * H + static_cast<size_t>(j) * GS;
    __syncthreads();
    head_softmax_stats<GS, kStreamThreads>(a.part_ml + bh0 * a.splits * 2, a.splits, Mh, iL);  // ends with a barrier
    return bh0;
  };

  STREAM_TRACE(0);
  // Phase 0.
  {
    const size_t total = static_cast<size_t>(a.rows) * kStreamBins;
    for (size_t i = static_cast<size_t>(blockIdx.x) * kStreamThreads + tid; i < total;
         i += static_cast<size_t>(P) * kStreamThreads)
      a.hist[i] = 0u;
    // Bit 134217728: no entry of this call's lists is ready yet (the last call's counts are stale).
    if (a.early)
      for (long long r = static_cast<long long>(blockIdx.x) * kStreamThreads + tid; r < a.rows; r += P * kStreamThreads)
        a.state[r * kStateInts + kB1ReadyInt] = 0;
  }
  grid_barrier(g_stream_barrier);
  STREAM_TRACE(1);

  // Phase 1.
  const long long t0 = blockIdx.x * a.work / P, t1 = (blockIdx.x + 1) * a.work / P;
  for (long long t = t0; t < t1;) {
    const long long row = t / a.tiles;
    const long long tEnd = min(t1, (row + 1) * a.tiles);
    for (int i = tid; i < kStreamBins; i += kStreamThreads) sh[i] = 0u;
    const size_t bh0 = row_stats(row);
    float* pr = a.pooled + static_cast<size_t>(row) * nU;
    for (; t < tEnd; ++t) {
      const int x = static_cast<int>(t - row * a.tiles) * kStreamTile + 8 * tid;
      if (x < n) stream_pool8_hist<GS>(u16, a.layout, a.u, a.m16, a.logits, bh0, n, nU, x, Mh, iL, sh, pr);
    }
    __syncthreads();
    unsigned* gh = a.hist + static_cast<size_t>(row) * kStreamBins;
    for (int i = tid; i < kStreamBins; i += kStreamThreads)
      if (sh[i]) atomicAdd(gh + i, sh[i]);
    __syncthreads();
  }
  grid_barrier(g_stream_barrier);
  STREAM_TRACE(2);

  // Phase 2. The list bins: b1 (f32 logits) or b1 - 1 .. b1 + 1 (f16 intermediate).
  for (long long r = blockIdx.x; r < a.rows; r += P) {
    __syncthreads();
    for (int i = tid; i < kStreamBins; i += kStreamThreads) sh[i] = __ldcg(a.hist + r * kStreamBins + i);
    __syncthreads();
    select_find_from_top<kStreamThreads>(sh, kStreamBins, static_cast<unsigned>(k), res);
    if (tid == 0) {
      int* st = a.state + r * kStateInts;
      const unsigned b1 = res[0];
      unsigned krem = res[1], binLo = b1, binHi = b1;
      if (u16) u16_list_bins(b1, sh, GS, &binLo, &binHi, &krem);
      st[0] = static_cast<int>(b1);
      st[1] = static_cast<int>(krem);
      st[2] = 0;
      st[3] = 0;
      st[4] = static_cast<int>(binLo);
      st[5] = static_cast<int>(binHi);
    }
    if (a.early) {
      // Bit 134217728: the sparse pass overwrites the partials (part_ml) while phase 4 still runs, so the row's heads'
      // softmax max and 1 / sum are kept in its histogram row (read above; not needed again).
      row_stats(r);
      float* keep = reinterpret_cast<float*>(a.hist + r * kStreamBins);
      if (tid < GS) {
        keep[tid] = Mh[tid];
        keep[GS + tid] = iL[tid];
      }
    }
  }
  grid_barrier(g_stream_barrier);
  STREAM_TRACE(3);

  // Phase 3.
  for (long long t = t0; t < t1;) {
    const long long row = t / a.tiles;
    const long long tEnd = min(t1, (row + 1) * a.tiles);
    int* st = a.state + row * kStateInts;
    const unsigned binLo = static_cast<unsigned>(__ldcg(st + 4)), binHi = static_cast<unsigned>(__ldcg(st + 5));
    const float* pr = a.pooled + static_cast<size_t>(row) * nU;
    int* o = a.out + static_cast<size_t>(row) * k;
    int* cl = a.cand + static_cast<size_t>(row) * n;
    float* cv = a.candVal + static_cast<size_t>(row) * n;
    // Two tiles a step: both tiles' loads are in flight before the step's counter atomics (one pair per warp).
    // (Session 7, call A: loading them by cp.async into a two-stage buffer, the next step's in flight during the
    // atomics, took phase 3 from ~78 to ~88 us at 128k batch 32; reverted. Session 8, call A: the next tiles
    // prefetched into L2 (cp.async.bulk.prefetch) 86 us against 80; the slots from shared staging lists flushed every
    // 8 steps, with the prefetch, 81-84 us: neither the loads' DRAM latency nor the slot atomics limit it; removed.
    // Session 11: four tiles a step under one pair of slot atomics (and phase 1 with two tiles' loads a step) spilled at
    // 80 registers, phase 3 104-109 us against 84-87 in call A; phase 3 recomputing the pooled scores from the
    // intermediate instead of phase 1 storing them, phase 1 76-78 us against 112-115 but phase 3 127-128 us, 179-181
    // with the sparse pass's scores written beside the indices (call B); both removed.)
    for (; t < tEnd; t += 2) {
      const int xt = static_cast<int>(t - row * a.tiles) * kStreamTile + 8 * tid;
      const int tiles2 = t + 1 < tEnd ? 2 : 1;
      float v[16];
      stream_load16(pr, xt, tiles2, n, v);
      stream_classify16(v, xt, tiles2, n, binLo, binHi, st + 2, st + 3, o, cl, cv);
    }
    t = tEnd;
  }
  grid_barrier(g_stream_barrier);
  STREAM_TRACE(4);
  if (a.early) {
    // Bit 134217728: the keys phase 3 wrote are final; publish each of this CTA's phase-4 rows' count, then let the
    // sparse pass launch (it reads an entry once a count covers it).
    if (tid == 0)
      for (long long r = blockIdx.x; r < a.rows; r += P)
        stream_publish_ready(a.state + r * kStateInts, __ldcg(a.state + r * kStateInts + 2));
    pdl_release();
  }
  // The row's heads' softmax statistics for phase 4 (bit 134217728: as phase 2 kept them).
  auto row_stats4 = [&](long long row) -> size_t {
    if (!a.early) return row_stats(row);
    const int b = static_cast<int>(row / G), j = static_cast<int>(row % G);
    __syncthreads();
    if (tid < GS) {
      const float* keep = reinterpret_cast<const float*>(a.hist + row * kStreamBins);
      Mh[tid] = __ldcg(keep + tid);
      iL[tid] = __ldcg(keep + GS + tid);
    }
    __syncthreads();
    return static_cast<size_t>(b) * H + static_cast<size_t>(j) * GS;
  };

  // Phase 4.
  for (long long r = blockIdx.x; r < a.rows; r += P) {
    const int* st = a.state + r * kStateInts;
    const unsigned krem = static_cast<unsigned>(__ldcg(st + 1));
    const int written = __ldcg(st + 2), C = __ldcg(st + 3);
    int* cl = a.cand + static_cast<size_t>(r) * n;
    float* cv = a.candVal + static_cast<size_t>(r) * n;
    int* o = a.out + static_cast<size_t>(r) * k;
    const bool cached = C <= kStreamCache;
    __syncthreads();  // the previous row's use of sh / cache / cnt is done
    if (cached)
      for (int i = tid; i < C; i += kStreamThreads) cache[i] = __ldcg(cv + i);
    if (tid == 0) {
      cnt[0] = written;
      cnt[1] = 0;
      cnt[2] = 0;
    }
    __syncthreads();
    auto listed = [&](int i) -> unsigned { return __float_as_uint(cached ? cache[i] : __ldcg(cv + i)); };
    // f32 logits: the list is one first-digit bin (bits 30..19 equal), so its first radix digit is known.
    const unsigned bin1 = static_cast<unsigned>(__ldcg(st));
    if (!u16) {
      select_radix<kStreamThreads>(listed, C, krem, sh, res, 1, bin1 >> 1);
      const unsigned thr = res[0], ties = res[1];
      for (int i = tid; i < C; i += kStreamThreads) {
        const unsigned v = listed(i);
        if (v > thr || (v == thr && static_cast<unsigned>(atomicAdd(&cnt[1], 1)) < ties))
          o[atomicAdd(&cnt[0], 1)] = __ldcg(cl + i);
      }
      continue;
    }
    // Bit 1024: the exact finish around the listed k-th score (select_common.cuh).
    const size_t bh0 = row_stats4(r);
    const int b = static_cast<int>(r / G), j = static_cast<int>(r % G);
    const T* kg = static_cast<const T*>(a.k) + (static_cast<size_t>(b) * G + j) * static_cast<size_t>(a.capacity) * D;
    u16_window_finish<T, D, GS, kStreamThreads>(listed, C, krem, cl, cv, o, cnt, sh, res, Mh, iL, kg,
                                                static_cast<const T*>(a.q) + bh0 * D, a.qscale);
    if (a.early) {
      // Bit 134217728: the row's whole list is written.
      __syncthreads();
      if (tid == 0) {
        __threadfence();
        stream_publish_ready(const_cast<int*>(st), k);
      }
    }
  }
  STREAM_TRACE(5);
}

StreamSelectArgs stream_select_args(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk,
                                    int* indices, const void* q, const void* k) {
  StreamSelectArgs a{};
  a.n = s.n;
  a.nU = u16_stride(s.n);
  a.heads = s.heads;
  a.kvHeads = s.kvHeads;
  a.splits = splits;
  a.topk = topk;
  a.u16 = (s.variant & KASCADE_VARIANT_U16) ? 1 : 0;
  a.layout = u16_layout_of(s.variant, s.heads / s.kvHeads);
  a.early = (a.u16 && (s.variant & KASCADE_VARIANT_SPARSE_U16) && (s.variant & KASCADE_VARIANT_U16_EARLY_SPARSE)) ? 1 : 0;
  a.capacity = s.capacity;
  a.qscale = s.scale * kLog2e;
  a.rows = static_cast<long long>(s.batch) * s.kvHeads;
  const size_t bh = static_cast<size_t>(s.batch) * s.heads;
  a.logits = w.logits;
  a.u = static_cast<const __half*>(static_cast<const void*>(w.logits));
  a.m16 = u16_m16(w.logits, bh, s.n);
  a.q = q;
  a.k = k;
  a.part_ml = w.part_ml;
  a.pooled = w.pooled;
  a.hist = w.hist;
  a.state = w.state;
  // The list lives in the logits buffer, free once pooled (phase 1 is over before phase 3 writes it):
  // keys [rows][n], then their scores [rows][n] (the workspace holds both). Bit 524288 (with 1024): past the f16
  // intermediate instead (the anchor's sparse pass reads it after the select).
  char* list = reinterpret_cast<char*>(w.logits);
  if (a.u16 && (s.variant & KASCADE_VARIANT_SPARSE_U16)) list += u16_list_offset(bh, s.n);
  a.cand = reinterpret_cast<int*>(list);
  a.candVal = reinterpret_cast<float*>(list) + static_cast<size_t>(a.rows) * s.n;
  a.out = indices;
  return a;
}

cudaError_t stream_select(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                          const void* q, const void* k, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  StreamSelectArgs a = stream_select_args(s, splits, w, topk, indices, q, k);
  // KASCADE_STREAM_SELECT_TRACE=1 (tuning runs only: it synchronizes after each launch): CTA 0's phase
  // times to stderr.
  static const bool trace = [] {
    const char* e = std::getenv("KASCADE_STREAM_SELECT_TRACE");
    return e && e[0] == '1';
  }();
  static long long* traceBuf = nullptr;
  if (trace && !traceBuf && cudaMalloc(&traceBuf, sizeof(long long) * kStreamTraceSlots) != cudaSuccess) {
    cudaGetLastError();
    traceBuf = nullptr;
  }
  a.trace = trace ? traceBuf : nullptr;
  constexpr size_t smem = sizeof(unsigned) * kStreamBins + sizeof(float) * kStreamCache;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        static int perSm = 0;  // CTAs resident per SM, queried once per instance
        if (perSm == 0) {
          cudaError_t e = cudaFuncSetAttribute(stream_select_kernel<T, D, GS>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
          if (e != cudaSuccess) return e;
          int nb = 0;
          e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, stream_select_kernel<T, D, GS>, kStreamThreads, smem);
          if (e != cudaSuccess) return e;
          if (nb < 1) return cudaErrorNotSupported;
          perSm = nb;
        }
        const StreamPlan plan = stream_plan(a.rows, s.n, perSm, device_sm_count());
        a.tiles = plan.tiles;
        a.work = plan.work;
        void* args[] = {&a};
        cudaError_t e = cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(stream_select_kernel<T, D, GS>),
                                                    dim3(static_cast<unsigned>(plan.ctas)), dim3(kStreamThreads),
                                                    args, smem, st);
        if (e == cudaSuccess) e = cudaGetLastError();
        if (e == cudaSuccess && a.trace) {
          long long t[kStreamTraceSlots] = {};
          e = cudaMemcpyAsync(t, a.trace, sizeof(t), cudaMemcpyDeviceToHost, st);
          if (e == cudaSuccess) e = cudaStreamSynchronize(st);
          int khz = 0, dev = 0;
          cudaGetDevice(&dev);
          cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
          const double us = khz > 0 ? 1e3 / khz : 0.0;
          std::fprintf(stderr,
                       "[stream select] rows %lld n %d ctas %d u16 %d: phase 0 %.1f, 1 %.1f, 2 %.1f, 3 %.1f, "
                       "4 (CTA 0) %.1f us\n",
                       a.rows, a.n, plan.ctas, a.u16, (t[1] - t[0]) * us, (t[2] - t[1]) * us, (t[3] - t[2]) * us,
                       (t[4] - t[3]) * us, (t[5] - t[4]) * us);
        }
        return e;
      });
    });
  });
}

}  // namespace kascade
