// Prefill anchors: the tile-pooled post-softmax Top-k (rolling budget) and the anchor / layer-0 ops.
//
// Pipeline of an anchor (layer 0 differs only in step 1):
//  1. prefill_attn_kernel (prefill_attention.cu) in statistics mode (anchor: reads K only) or dense +
//     statistics mode (layer 0: the dense output too): per query row the max (log2 domain) and the sum of
//     its full causal softmax, stats [batch, heads, queries, 2] f32.
//  2. pool_prefill_kernel<T, D>  grid (tiles, pairs in this pass), 128 threads = 4 warps, one block = one
//     (sequence, KV head) pair and one query tile t starting at s_t. The tile's g x 32 query rows sit in
//     shared memory ((D + 8) x 2 B each: 69.6 KB at g = 8, D = 128) with their statistics; each warp takes
//     16 keys of 0..s_t-1 at a time as the A operand of mma.sync (K rows straight from global/L2 into
//     registers), the query rows as B (ldmatrix), so S^T = K Q^T; then
//     S[j,t](x) = sum over rows of exp2(l(x) - M_row) / L_row is a row sum within the thread and its quad.
//     Written to a packed row of s_t floats (the causal part only). Keys before the tile only: the diagonal
//     tile is attended on top and never competes.
//  3. select_prefill_v3_kernel (prefill_select_v3.cu)  grid (tiles, pairs in this pass), 256 threads, one block
//     per pooled row:
//     exact select of the counts[t] largest (prefill_select.cuh): with the pool's row maximum (pools v60 / v67 / v75:
//     rows of 16384 scores or more from a sampled band first) a count in 4096 bins under it, then one pass keeping
//     the k-th's bin in shared memory; else (and
//     as the fallback) a radix select over the f32 pattern (11 + 11 bits, then the candidates sharing the
//     k-th's 22-bit prefix). Ties at the k-th lowest index first (the spec's rule, kept exactly). Writes indices
//     [batch, kvHeads, tiles, kMax], -1 in unused entries.
//  4. anchor only: prefill_attn_kernel in sparse mode over the selection plus the diagonal tile.
// Memory: the pooled rows of one pair take sum_t s_t floats (T n^2 / 2 / 32 f32 = 1.07 GB at n = 128k);
// pairs go through steps 2-3 in passes sized to a 2 GiB pooled buffer (2 pairs per pass at 128k), so the
// workspace is stats (8 B per query row per head) + at most ~2 GiB (+ 4 B per pooled row for the row maxima),
// never [tiles x n] per head.
// Bytes: step 2 reads K (from L2 mostly: each block re-reads its pair's keys before the tile) and writes
// the pooled rows once; step 3 reads each row one and an eighth times (sampled rows) or twice (shorter ones).
#include <cstdlib>
#include <cstring>

#include "prefill_attention.cuh"

namespace kascade {
namespace pf {

constexpr size_t kPooledBudgetBytes = size_t(2) << 30;


template <int D>
constexpr size_t pool_smem_bytes(int g) {
  return static_cast<size_t>(g) * kT * ((D + 8) * 2 + 2 * sizeof(float));
}

template <typename T, int D>
__global__ void __launch_bounds__(128) pool_prefill_kernel(KascadePrefillShape s, const void* __restrict__ qp,
                                                           const void* __restrict__ kp,
                                                           const float* __restrict__ stats,
                                                           float* __restrict__ pooled, int pairBase,
                                                           size_t perPair, int denseLayout) {
  constexpr int RW = D + 8;
  constexpr int KC = D / 16;
  constexpr int CPR = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int H = s.heads, G = s.kvHeads, Q = s.queries, g = H / G, R = g * kT;
  const int n = s.queryStart + Q;
  T* Qs = reinterpret_cast<T*>(smem_raw);
  float* Ms = reinterpret_cast<float*>(Qs + R * RW);
  float* iLs = Ms + R;

  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y, b = pair / G, j = pair % G;
  const int st = s.queryStart + t * kT;
  if (st == 0) return;
  float* rowp = denseLayout ? pooled + (static_cast<size_t>(pair) * tiles + t) * n
                            : pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3, mi = lane >> 3, r8 = lane & 7;

  // The tile's query rows rr = hh * 32 + i (query head j*g + hh, query t*32 + i) and their statistics.
  for (int c = tid; c < R * CPR; c += blockDim.x) {
    const int rr = c / CPR, col = (c % CPR) * 8;
    const int hh = rr / kT, qi = t * kT + rr % kT;
    const bool valid = qi < Q;
    const size_t qrow = (static_cast<size_t>(b) * H + j * g + hh) * static_cast<size_t>(Q) + (valid ? qi : 0);
    cp_async16(Qs + rr * RW + col, static_cast<const T*>(qp) + qrow * D + col, valid ? 16 : 0);
  }
  cp_async_commit();
  for (int rr = tid; rr < R; rr += blockDim.x) {
    const int hh = rr / kT, qi = t * kT + rr % kT;
    if (qi < Q) {
      const size_t qrow = (static_cast<size_t>(b) * H + j * g + hh) * static_cast<size_t>(Q) + qi;
      Ms[rr] = stats[qrow * 2];
      iLs[rr] = 1.f / stats[qrow * 2 + 1];
    } else {
      Ms[rr] = INFINITY;  // exp2(x - inf) = 0: rows past the chunk's end pool nothing
      iLs[rr] = 0.f;
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  const float qscale = s.scale * kLog2e;
  const T* kg = static_cast<const T*>(kp) + (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  for (int kbase = warp * 16; kbase < st; kbase += 64) {
    const int x0 = kbase + row, x1 = x0 + 8;
    uint32_t ka[KC][4];
#pragma unroll
    for (int kc = 0; kc < KC; ++kc) {
      ka[kc][0] = x0 < st ? ld32g(kg + static_cast<size_t>(x0) * D + kc * 16 + quad * 2) : 0u;
      ka[kc][1] = x1 < st ? ld32g(kg + static_cast<size_t>(x1) * D + kc * 16 + quad * 2) : 0u;
      ka[kc][2] = x0 < st ? ld32g(kg + static_cast<size_t>(x0) * D + kc * 16 + 8 + quad * 2) : 0u;
      ka[kc][3] = x1 < st ? ld32g(kg + static_cast<size_t>(x1) * D + kc * 16 + 8 + quad * 2) : 0u;
    }
    float p0 = 0.f, p1 = 0.f;
    for (int rb = 0; rb < R / 16; ++rb) {
      float c0[4] = {0.f, 0.f, 0.f, 0.f}, c1[4] = {0.f, 0.f, 0.f, 0.f};
      const T* base = Qs + (rb * 16 + (mi >> 1) * 8 + r8) * RW + (mi & 1) * 8;
#pragma unroll
      for (int kc = 0; kc < KC; ++kc) {
        uint32_t bf[4];
        ldmatrix_x4(bf, base + kc * 16);
        mma16816<T>(c0, ka[kc], bf[0], bf[1]);
        mma16816<T>(c1, ka[kc], bf[2], bf[3]);
      }
      // c0: keys x0 ([0], [1]) / x1 ([2], [3]) against query rows qr, qr + 1; c1: rows qr + 8, qr + 9.
      const int qr = rb * 16 + quad * 2;
      const float ma = Ms[qr], mb = Ms[qr + 1], mc = Ms[qr + 8], md = Ms[qr + 9];
      const float ia = iLs[qr], ib = iLs[qr + 1], ic = iLs[qr + 8], id = iLs[qr + 9];
      p0 += exp2f(c0[0] * qscale - ma) * ia + exp2f(c0[1] * qscale - mb) * ib + exp2f(c1[0] * qscale - mc) * ic +
            exp2f(c1[1] * qscale - md) * id;
      p1 += exp2f(c0[2] * qscale - ma) * ia + exp2f(c0[3] * qscale - mb) * ib + exp2f(c1[2] * qscale - mc) * ic +
            exp2f(c1[3] * qscale - md) * id;
    }
    p0 += __shfl_xor_sync(0xffffffffu, p0, 1);
    p0 += __shfl_xor_sync(0xffffffffu, p0, 2);
    p1 += __shfl_xor_sync(0xffffffffu, p1, 1);
    p1 += __shfl_xor_sync(0xffffffffu, p1, 2);
    if (quad == 0) {
      if (x0 < st) rowp[x0] = p0;
      if (x1 < st) rowp[x1] = p1;
    }
  }
}

// KASCADE_PREFILL_POOL: v1 (pool_prefill_kernel above; every shape), v32 (session 6's default; gone in session 8, its
// select's MODE 0 path runs for pool v1 and as v56's fallback): four consumer warpgroups taking 64-key steps
// round-robin, in turns, statistics from the attention pass (prefill_pool_v17.cu; head dim 128, g = 4, else v1), then
// select v3 (prefill_select_v3.cu) with its one-pass finish after the second digit (three passes over each pooled row);
// v56 (the default since session 7's call B): the same pool also writing each row's largest score, the select counting
// the row in bins under it and keeping the k-th's bin (two passes); v60 (the default since session 8's call B): v56's
// pool, then for rows of 16384 scores or more the select counting a sample of an eighth of the row first and one pass
// keeping a band around the k-th (select_pooled_row_sampled: one and an eighth passes, v56's select where the band
// misses); shorter rows on v56's select. Call A's v57 (the same without the warp-aggregated writes, every row sampled)
// lost at 8k and 32k (its select issue-bound, 0.43 against 0.38 ms at 32k) and is gone. Session 7, call B, 128k: v56's
// anchor 287.2 against v32's 293.9 ms, layer 0 351.7 against 363.7; select 1.43-1.51 ms per launch against 2.71-2.96
// (ncu). Session 7's v55 was the same select checking every score against the row's end and binning it again in its
// second pass (0.41 against v56's 0.38 ms at 32k, ncu; the ops within noise): superseded, gone. Session 7 also timed
// the select inside the pool's CTAs, each selecting the row it had just pooled, read back from L2 (v53: select v3's
// body, v54: v55's; rows in one slot per SM, a 103 MB workspace at 128k instead of 2.18 GB): anchor 303.9 and 296.2 ms
// against v55's 288.8, gone. Session 5's v19 (the four-pass select) is gone; session 6 also timed FMA-pipe exponentials
// (v23), the pool counting the select's first digit (v27 / v28 / v31), four loads in flight per select thread (v33), 4
// GiB pooled passes (v34), float4 row constants (v35) and the select on a second stream under the next pass's pool
// (v36): all slower, all gone, as are sessions 2-5's pools v2-v18 and v20-v22. v67 (the default since session 9):
// v60's select after pool v67 (prefill_pool_v17.cu: fewer instructions per step and, on launches of at least 2048
// four-tile CTAs, four tiles per CTA, each K step loaded once for the four). v56 (session 7's default, the comparison
// row until session 9's call A), session 9's candidates v63-v66 and session 10's v68 / v69 (the query rows in
// registers, three / two consumer warpgroups: prefill_pool_v17.cu) and v70 (v67's kernels with layer 0's dense +
// statistics pass split by pooled pass, each pass's KV heads right before their pool: call C at b21e491, 128k layer 0
// 357.0 against v67's 356.3 ms) are gone, as are session 11's v71-v74 (each step's product as two m64n64 halves:
// prefill_pool_v17.cu). v75 (the default since session 11's call B): v67 with 12 of each pool thread's 32 row
// constants in registers (prefill_pool_v17.cu). Session 12's v76-v78 (the four-tile pool with no producer
// warpgroup) and v79-v82 (the pooled sums as trees) did not beat it and are gone.
static int pool_variant() {
  const int v = prefill_variant_number(getenv("KASCADE_PREFILL_POOL"));
  return v == 1 || v == 60 || v == 67 ? v : 75;  // else the default (DEFAULT_PREFILL_KERNELS, preset v75)
}

struct PrefillWorkspace {
  float* stats;
  float* pooled;
  size_t perPair;  // floats of one pair's packed pooled rows
  int pairsPerPass;
  float* rowMax;   // pools v60 / v67 / v75: [pairs, tiles], each pooled row's largest score (null otherwise)
  size_t bytes;
};

static size_t align256(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

static PrefillWorkspace prefill_workspace(const KascadePrefillShape& s, void* base) {
  PrefillWorkspace w{};
  const int tiles = tiles_of(s);
  const int pairs = s.batch * s.kvHeads;
  w.perPair = packed_offset(s.queryStart, tiles);
  const size_t statsBytes = align256(static_cast<size_t>(s.batch) * s.heads * s.queries * 2 * sizeof(float));
  size_t ppp = w.perPair ? kPooledBudgetBytes / (w.perPair * sizeof(float)) : static_cast<size_t>(pairs);
  if (ppp < 1) ppp = 1;
  if (ppp > static_cast<size_t>(pairs)) ppp = pairs;
  if (ppp > 65535) ppp = 65535;  // grid.y
  // KASCADE_PREFILL_PASS_PAIRS (the parity job: 1): at most that many pairs per pooled pass, so small chunks take the
  // multi-pass paths that 128k takes. Read at every call (the workspace size too).
  const char* pe = getenv("KASCADE_PREFILL_PASS_PAIRS");
  if (pe && atoi(pe) > 0 && ppp > static_cast<size_t>(atoi(pe))) ppp = atoi(pe);
  w.pairsPerPass = static_cast<int>(ppp);
  const size_t pooledBytes = align256(ppp * w.perPair * sizeof(float));
  const size_t maxBytes =
      pool_variant() >= 60 && pool_v17_supports(s) ? align256(static_cast<size_t>(pairs) * tiles * sizeof(float)) : 0;
  char* p = static_cast<char*>(base);
  w.stats = p ? reinterpret_cast<float*>(p) : nullptr;
  w.rowMax = p && maxBytes ? reinterpret_cast<float*>(p + statsBytes) : nullptr;
  w.pooled = p ? reinterpret_cast<float*>(p + statsBytes + maxBytes) : nullptr;
  w.bytes = statsBytes + maxBytes + pooledBytes;
  return w;
}

template <typename T, int D>
static cudaError_t launch_pool_t(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                                 float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                                 cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  const size_t smem = pool_smem_bytes<D>(g);
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(pool_prefill_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(pool_smem_bytes<D>(8)));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  pool_prefill_kernel<T, D><<<dim3(tiles_of(s), pairs), 128, smem, st>>>(s, q, k, stats, pooled, pairBase, perPair,
                                                                          denseLayout);
  return cudaGetLastError();
}

static cudaError_t launch_pool(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                               float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout,
                               float* rowMax, cudaStream_t st) {
  if (pool_variant() != 1 && pool_v17_supports(s))
    return launch_pool_v17(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, rowMax, pool_variant(),
                           st);
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return launch_pool_t<T, D>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, st);
    });
  });
}

// Steps 1-4 above; layer0 = dense output in step 1 and no step 4.
static cudaError_t anchor_prefill(const KascadePrefillShape* s, bool layer0, const void* q, const void* k,
                                  const void* v, void* out, const int* counts, int kMax, int* indices,
                                  void* workspace, size_t wsBytes, cudaStream_t st) {
  cudaError_t e = kascade_prefill_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  if (kMax < 1 || !counts || !indices || !workspace) return cudaErrorInvalidValue;
  const PrefillWorkspace w = prefill_workspace(*s, workspace);
  if (wsBytes < w.bytes) return cudaErrorInvalidValue;
  PrefillArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.stats = w.stats;
  const int pairs = s->batch * s->kvHeads;
  if ((e = launch_prefill_attention(*s, layer0 ? kDenseStats : kStats, a, st)) != cudaSuccess) return e;
  const bool sampled = pool_variant() >= 60;
  for (int p0 = 0; p0 < pairs; p0 += w.pairsPerPass) {
    const int np = min(w.pairsPerPass, pairs - p0);
    if (w.perPair > 0 &&
        (e = launch_pool(*s, q, k, w.stats, w.pooled, p0, np, w.perPair, 0, w.rowMax, st)) != cudaSuccess)
      return e;
    if ((e = launch_select_v3(*s, w.pooled, p0, np, w.perPair, counts, kMax, indices, w.rowMax, sampled, st)) !=
        cudaSuccess)
      return e;
  }
  if (layer0) return cudaSuccess;
  a.counts = counts;
  a.indices = indices;
  a.kMax = kMax;
  a.selKvHeads = s->kvHeads;
  for (int j = 0; j < s->kvHeads; ++j) a.headMap[j] = j;
  return launch_prefill_attention(*s, kSparse, a, st);
}

}  // namespace pf
}  // namespace kascade

using namespace kascade;
using namespace kascade::pf;

extern "C" size_t kascade_prefill_workspace_bytes(const KascadePrefillShape* s) {
  return prefill_workspace(*s, nullptr).bytes;
}

extern "C" cudaError_t kascade_dense_anchor_prefill(const KascadePrefillShape* s, const void* q, const void* k,
                                                    const void* v, void* out, const int* counts, int kMax,
                                                    int* indices, void* workspace, size_t wsBytes,
                                                    cudaStream_t st) {
  return anchor_prefill(s, true, q, k, v, out, counts, kMax, indices, workspace, wsBytes, st);
}

extern "C" cudaError_t kascade_anchor_prefill(const KascadePrefillShape* s, const void* q, const void* k,
                                              const void* v, void* out, const int* counts, int kMax, int* indices,
                                              void* workspace, size_t wsBytes, cudaStream_t st) {
  return anchor_prefill(s, false, q, k, v, out, counts, kMax, indices, workspace, wsBytes, st);
}

extern "C" cudaError_t kascade_pooled_prefill_scores(const KascadePrefillShape* s, const void* q, const void* k,
                                                     float* pooled, void* workspace, size_t wsBytes,
                                                     cudaStream_t st) {
  cudaError_t e = kascade_prefill_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  const PrefillWorkspace w = prefill_workspace(*s, workspace);
  if (!workspace || wsBytes < w.bytes || !pooled) return cudaErrorInvalidValue;
  const int tiles = tiles_of(*s), pairs = s->batch * s->kvHeads;
  const size_t n = static_cast<size_t>(s->queryStart) + s->queries;
  if ((e = cudaMemsetAsync(pooled, 0, static_cast<size_t>(pairs) * tiles * n * sizeof(float), st)) != cudaSuccess)
    return e;
  PrefillArgs a{};
  a.q = q;
  a.k = k;
  a.stats = w.stats;
  if ((e = launch_prefill_attention(*s, kStats, a, st)) != cudaSuccess) return e;
  return launch_pool(*s, q, k, w.stats, pooled, 0, pairs, 0, 1, nullptr, st);
}
