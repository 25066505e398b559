// Row workers (KASCADE_VARIANT_ROW_WORKERS, bit 1048576, with bit 1024 on the split schedule; cuda-anchor, session 7):
// the anchors' Top-k select beside the scores / layer-0 pass instead of after it.
//
// The pass's CTAs of (sequence, KV head) row r add 1 to g_row_done[r] once their share of the row's f16
// intermediate and their partial softmax statistics are written (decode_attention.cu); the pass's grid is
// (splits, kvHeads, batch), so rows finish roughly in order. Before the pass, anchor_decode.cu launches
// row_select_kernel on a second, high-priority stream: W resident CTAs (kRowWorkers at most, 256 threads, 16 KB
// of shared memory and <= 80 registers: they fit beside the pass's CTAs), CTA c taking rows c, c + W, ... Per row:
//   wait until all `splits` CTAs of the row have counted (thread 0 polls with an acquire load, then resets the
//   counter for the next launch); the heads' softmax max and sum from the row's partials; the pooled scores and
//   a 12-bit first-digit histogram in shared memory (stream_pool8, as the stream select's phase 1), the pooled row
//   written to the workspace; the rank-k bin and the bins the exact window can reach (u16_list_bins); the row
//   classified (stream_classify16, as phase 3, slots from shared counters); the exact finish over the listed keys
//   (u16_window_finish, as phase 4). The same selection as the stream select (ties at the k-th value: any).
// The select's latency then hides under the pass; what remains is the last rows' select after the pass ends.
// The list of each row lives past the intermediate (u16_list_offset), which the other rows' workers still read.
// L2 (l2_hints.cuh): the pass stores the intermediate evict-last and streams K / V evict-first; after a row's select
// its worker discards the row's pooled scores and (unless the anchor's sparse pass reads it, bit 524288) its
// intermediate from L2, so a row consumed while in L2 never goes to DRAM.
// The op enqueues the pass before the workers (a serialising profiler such as ncu then runs the whole pass first).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "decode_attention.cuh"
#include "decode_device.cuh"
#include "select_common.cuh"
#include "select_decode.cuh"
#include "l2_hints.cuh"

namespace kascade {

constexpr int kRowWorkers = 32;

// Zero at module load; each row's worker resets its counter after reading it.
__device__ unsigned g_row_done[kMaxFusedRows];

__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ unsigned long long globaltimer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

template <typename T, int D, int GS>
__global__ void __launch_bounds__(kStreamThreads, 3) row_select_kernel(const StreamSelectArgs a) {
  __shared__ unsigned sh[kStreamBins];
  __shared__ float Mh[GS], iL[GS];
  __shared__ unsigned res[2], bins[3];  // binLo, binHi, the rank still wanted among the listed keys
  __shared__ int cnt[3], listed;
  const int tid = static_cast<int>(threadIdx.x);
  const int n = a.n, nU = a.nU, G = a.kvHeads, k = a.topk;
  const int tiles = (n + kStreamTile - 1) / kStreamTile;
  for (long long row = blockIdx.x; row < a.rows; row += gridDim.x) {
    __syncthreads();  // the previous row's shared state is no longer read
    if (tid == 0) {
      // The pass is enqueued before the workers, so a serialising profiler runs it first and a failed pass launch
      // never starts them. The wait is still bounded (2^36 clocks, ~35 s at 1.98 GHz) against a hang; call B's
      // bound of 2^28 ran out under six processes sharing the GPU by time slices (the workers then launched first).
      const long long t0 = clock64();
      while (ld_acquire_gpu(a.rowDone + row) < static_cast<unsigned>(a.splits) && clock64() - t0 < (1LL << 36))
        __nanosleep(200);
      a.rowDone[row] = 0u;
      if (a.rowTrace) a.rowTrace[2 * row] = globaltimer_ns();
    }
    __syncthreads();
    __threadfence();
    const int b = static_cast<int>(row / G), j = static_cast<int>(row % G);
    const size_t bh0 = static_cast<size_t>(b) * a.heads + static_cast<size_t>(j) * GS;
    // The heads' softmax max and 1 / sum from the row's partials, copied through L2 into shared memory first (an L1
    // copy of a line that other rows' partials share could be stale: the pass writes them meanwhile).
    const float* ml = a.part_ml + bh0 * a.splits * 2;
    const int mlCount = GS * a.splits * 2;
    if (mlCount <= kStreamBins) {
      float* mls = reinterpret_cast<float*>(sh);
      for (int i = tid; i < mlCount; i += kStreamThreads) mls[i] = __ldcg(ml + i);
      __syncthreads();
      ml = mls;
    }
    head_softmax_stats<GS, kStreamThreads>(ml, a.splits, Mh, iL);  // ends with a barrier
    for (int i = tid; i < kStreamBins; i += kStreamThreads) sh[i] = 0u;
    __syncthreads();
    float* pr = a.pooled + static_cast<size_t>(row) * nU;
    for (int t = 0; t < tiles; ++t) {
      const int x = t * kStreamTile + 8 * tid;
      if (x < n) stream_pool8_hist<GS, true>(true, a.u, a.m16, nullptr, bh0, n, nU, x, Mh, iL, sh, pr);
    }
    __threadfence();  // the pooled row is read back through L2 (ld.cg) by other threads
    __syncthreads();
    select_find_from_top<kStreamThreads>(sh, kStreamBins, static_cast<unsigned>(k), res);
    if (tid == 0) {
      unsigned krem = res[1], binLo = res[0], binHi = res[0];
      u16_list_bins(res[0], sh, GS, &binLo, &binHi, &krem);
      bins[0] = binLo;
      bins[1] = binHi;
      bins[2] = krem;
      cnt[0] = 0;
      listed = 0;
    }
    __syncthreads();
    int* o = a.out + static_cast<size_t>(row) * k;
    int* cl = a.cand + static_cast<size_t>(row) * n;
    float* cv = a.candVal + static_cast<size_t>(row) * n;
    for (int t = 0; t < tiles; t += 2) {
      const int xt = t * kStreamTile + 8 * tid;
      const int tiles2 = t + 1 < tiles ? 2 : 1;
      float v[16];
      stream_load16(pr, xt, tiles2, n, v);
      stream_classify16(v, xt, tiles2, n, bins[0], bins[1], &cnt[0], &listed, o, cl, cv);
    }
    __threadfence();
    __syncthreads();
    const int C = listed;
    const unsigned krem = bins[2];
    if (tid == 0) {
      cnt[1] = 0;
      cnt[2] = 0;
    }
    __syncthreads();
    const T* kg = static_cast<const T*>(a.k) + (static_cast<size_t>(b) * G + j) * static_cast<size_t>(a.capacity) * D;
    u16_window_finish<T, D, GS, kStreamThreads>([&](int i) -> unsigned { return __float_as_uint(__ldcg(cv + i)); }, C,
                                                krem, cl, cv, o, cnt, sh, res, Mh, iL, kg,
                                                static_cast<const T*>(a.q) + bh0 * D, a.qscale);
    // The row's pooled scores, and (unless the anchor's sparse pass reads it: bit 524288) its intermediate, leave L2
    // without a write-back: nobody reads them again.
    __syncthreads();
    if (a.rowTrace && tid == 0) a.rowTrace[2 * row + 1] = globaltimer_ns();
    l2_discard_range<kStreamThreads>(pr, sizeof(float) * static_cast<size_t>(nU));
    if (a.discardIntermediate) {
      l2_discard_range<kStreamThreads>(a.u + bh0 * nU, sizeof(__half) * GS * static_cast<size_t>(nU));
      l2_discard_range<kStreamThreads>(a.m16 + bh0 * (nU / 16), sizeof(float) * GS * static_cast<size_t>(nU / 16));
    }
  }
}

// KASCADE_ROW_WORKER_TRACE=1 (tuning runs only: row_workers_report synchronizes): per launch to stderr, from the
// global timer, how long after the first row's wait ended the last row's did (the pass's span as the workers saw
// it), the tail after that to the last row's select, and the mean time a worker spent on one row.
static bool row_trace_on() {
  static const bool on = [] {
    const char* e = std::getenv("KASCADE_ROW_WORKER_TRACE");
    return e && e[0] == '1';
  }();
  return on;
}
static unsigned long long* g_traceBuf = nullptr;
static long long g_traceCap = 0, g_traceRows = 0;
static unsigned g_traceCtas = 0;
static int g_traceN = 0;
static unsigned long long* row_trace_buffer(long long rows) {
  if (!row_trace_on()) return nullptr;
  if (g_traceCap < rows) {
    if (g_traceBuf) cudaFree(g_traceBuf);
    g_traceBuf = nullptr;
    g_traceCap = 0;
    if (cudaMalloc(&g_traceBuf, sizeof(unsigned long long) * 2 * rows) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    g_traceCap = rows;
  }
  return g_traceBuf;
}

cudaError_t row_workers_report(cudaStream_t st) {
  if (g_traceRows == 0) return cudaSuccess;
  std::vector<unsigned long long> t(2 * static_cast<size_t>(g_traceRows));
  cudaError_t e = cudaMemcpyAsync(t.data(), g_traceBuf, sizeof(unsigned long long) * t.size(), cudaMemcpyDeviceToHost, st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st);
  if (e != cudaSuccess) return e;
  unsigned long long first = ~0ull, lastWait = 0, lastDone = 0;
  double busy = 0.0;
  for (long long r = 0; r < g_traceRows; ++r) {
    first = std::min(first, t[2 * r]);
    lastWait = std::max(lastWait, t[2 * r]);
    lastDone = std::max(lastDone, t[2 * r + 1]);
    busy += static_cast<double>(t[2 * r + 1] - t[2 * r]);
  }
  std::fprintf(stderr,
               "[row workers] rows %lld n %d ctas %u: rows' waits ended over %.1f us, last select %.1f us after, "
               "%.1f us per row\n",
               g_traceRows, g_traceN, g_traceCtas, (lastWait - first) * 1e-3, (lastDone - lastWait) * 1e-3,
               busy / static_cast<double>(g_traceRows) * 1e-3);
  g_traceRows = 0;
  return cudaSuccess;
}

unsigned* row_done_counters() {
  static unsigned* p = nullptr;
  if (!p && cudaGetSymbolAddress(reinterpret_cast<void**>(&p), g_row_done) != cudaSuccess) p = nullptr;
  return p;
}

cudaError_t launch_row_workers(const KascadeDecodeShape& s, int splits, const Workspace& w, int topk, int* indices,
                               const void* q, const void* k, cudaStream_t side) {
  const int g = s.heads / s.kvHeads;
  StreamSelectArgs a = stream_select_args(s, splits, w, topk, indices, q, k);
  a.rowDone = row_done_counters();
  a.discardIntermediate = (s.variant & KASCADE_VARIANT_SPARSE_U16) ? 0 : 1;
  if (!a.rowDone) return cudaErrorInvalidSymbol;
  const unsigned ctas = static_cast<unsigned>(a.rows < kRowWorkers ? a.rows : kRowWorkers);
  a.rowTrace = row_trace_buffer(a.rows);
  g_traceRows = a.rowTrace ? a.rows : 0;
  g_traceCtas = ctas;
  g_traceN = a.n;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        row_select_kernel<T, D, GS><<<ctas, kStreamThreads, 0, side>>>(a);
        return cudaGetLastError();
      });
    });
  });
}

}  // namespace kascade
