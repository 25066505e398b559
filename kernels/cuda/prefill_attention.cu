// Prefill attention on the tensor cores (mma.sync m16n8k16, f32 accumulate), FlashAttention-2 style:
// dense causal (baseline, layer 0), softmax statistics only (anchor pass 1), and sparse tile attention
// over a key list (anchor pass 3, reuse).
//
// Kernel prefill_attn_kernel<T, D, GS, MODE, WARPS>
//   Layout: q/out [batch, heads, queries, D], k/v [batch, kvHeads, capacity, D] (bf16/f16, f32 math),
//   stats [batch, heads, queries, 2] f32 (row max in the log2 domain, row sum), see prefill_api.h.
//   One warp = 16 query rows of one head; the block's warps share one stream of 64-key steps whose K (and
//   V) rows go to a 2-stage shared-memory ring with 16-byte cp.async (a key-position list per step
//   says which row each slot holds, -1 = masked and never read).
//   - dense modes: grid (ceil(queries / 64), heads, batch), 4 warps = 64 consecutive queries of one
//     head; keys 0 .. last row's position; heaviest (last) query blocks are scheduled first; a warp
//     skips steps wholly after its rows and masks only steps that cross its diagonal.
//   - sparse: grid (tiles, kvHeads x 2GS/WARPS, batch), WARPS = min(2GS, 8); the block's warps are the
//     16-row halves of the tile's 32 queries for the group's query heads, so every gathered K/V row is
//     read once per group per tile (twice at g = 8). Key list: the first counts[t] entries of
//     indices[b, headMap[j], t, :] (entries outside 0..s_t-1 masked), then the diagonal keys
//     s_t .. min(s_t + 32, n) - 1 under the causal mask.
//   Per step and warp: S = Q K^T (Q fragments held in registers for the whole kernel, K through
//   ldmatrix), online softmax in the log2 domain (two rows per thread), P rounded to the 16-bit type
//   as the A operand of O += P V (V through ldmatrix.trans).
//   Shared memory: 2 stages x 64 x (D + 8) x 2 B for K and again for V (+512 B positions): 69.6 KB at
//   D = 128 (34.8 KB statistics-only).
//   Bytes: dense reads Q once, K/V once per 64-query block and head (L2 absorbs the reuse across a
//   group's heads and blocks); sparse reads the listed K/V rows once per block; writes out (and 8 B of
//   statistics per row when asked).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "prefill_attention.cuh"

namespace kascade {
namespace pf {

template <typename T, int D, int MODE>
constexpr size_t attn_smem_bytes() {
  return static_cast<size_t>((MODE == kStats ? 2 : 4) * kKeys * (D + 8)) * sizeof(T) + 2 * kKeys * sizeof(int);
}

template <typename T, int D, int GS, int MODE, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) prefill_attn_kernel(KascadePrefillShape s, PrefillArgs a) {
  constexpr bool kWithV = MODE != kStats;
  constexpr bool kSparseMode = MODE == kSparse;
  constexpr bool kWriteStats = MODE == kDenseStats || MODE == kStats;
  constexpr int RW = D + 8;  // padded row: ldmatrix's 8 rows on distinct banks
  constexpr int KC = D / 16;
  constexpr int NB = D / 8;
  constexpr int NT = WARPS * 32;
  constexpr int CPR = D / 8;  // 16-byte chunks per row

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + 2 * kKeys * RW;
  int* posS = reinterpret_cast<int*>(Ks + (kWithV ? 4 : 2) * kKeys * RW);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;

  int h, j, q0w, listLen, cnt = 0, tileStart = 0;
  const int* idx = nullptr;
  if constexpr (kSparseMode) {
    constexpr int BPT = 2 * GS / WARPS;  // blocks per (tile, KV head)
    const int tiles = tiles_of(s);
    const int t = tiles - 1 - static_cast<int>(blockIdx.x);
    j = blockIdx.y / BPT;
    const int rbg = (blockIdx.y % BPT) * WARPS + warp;
    h = j * GS + (rbg >> 1);
    q0w = t * kT + (rbg & 1) * 16;
    tileStart = s.queryStart + t * kT;
    const int diag = min(kT, n - tileStart);
    cnt = min(max(__ldg(a.counts + t), 0), a.kMax);
    idx = a.indices + ((static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * tiles + t) * a.kMax;
    listLen = cnt + diag;
  } else {
    const int qb = gridDim.x - 1 - blockIdx.x;
    h = blockIdx.y;
    j = h / (H / G);
    q0w = qb * (16 * WARPS) + warp * 16;
    listLen = min(n, s.queryStart + (qb + 1) * 16 * WARPS);
  }
  const int pos0 = s.queryStart + q0w + row, pos1 = pos0 + 8;
  const int qi0 = q0w + row, qi1 = qi0 + 8;
  const float qscale = s.scale * kLog2e;

  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t qBase = (static_cast<size_t>(b) * H + h) * static_cast<size_t>(Q);

  // Q as the A operand, kept in registers: rows qi0 / qi1, k = (lane % 4) * 2 + {0, 1} (+8).
  uint32_t qa[KC][4];
  {
    const T* q0p = static_cast<const T*>(a.q) + (qBase + qi0) * D;
    const T* q1p = static_cast<const T*>(a.q) + (qBase + qi1) * D;
#pragma unroll
    for (int kc = 0; kc < KC; ++kc) {
      qa[kc][0] = qi0 < Q ? ld32g(q0p + kc * 16 + quad * 2) : 0u;
      qa[kc][1] = qi1 < Q ? ld32g(q1p + kc * 16 + quad * 2) : 0u;
      qa[kc][2] = qi0 < Q ? ld32g(q0p + kc * 16 + 8 + quad * 2) : 0u;
      qa[kc][3] = qi1 < Q ? ld32g(q1p + kc * 16 + 8 + quad * 2) : 0u;
    }
  }

  auto list_pos = [&](int li) -> int {
    if (li >= listLen) return -1;
    if constexpr (kSparseMode) {
      if (li < cnt) {
        const int p = __ldg(idx + li);
        return (p >= 0 && p < tileStart) ? p : -1;  // keys at/after the tile come from the diagonal
      }
      return tileStart + (li - cnt);
    }
    return li;
  };
  const int steps = (listLen + kKeys - 1) / kKeys;
  auto issue = [&](int i) {
    if (i < steps) {
      const int st = i & 1;
      for (int c = tid; c < kKeys * CPR; c += NT) {
        const int r = c / CPR, col = (c % CPR) * 8;
        const int p = list_pos(i * kKeys + r);
        if (col == 0) posS[st * kKeys + r] = p;
        const size_t off = static_cast<size_t>(p < 0 ? 0 : p) * D + col;
        cp_async16(Ks + (st * kKeys + r) * RW + col, kg + off, p < 0 ? 0 : 16);
        if constexpr (kWithV) cp_async16(Vs + (st * kKeys + r) * RW + col, vg + off, p < 0 ? 0 : 16);
      }
    }
    cp_async_commit();
  };

  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float acc[NB][4];
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.f;

  const int mi = lane >> 3, r8 = lane & 7;
  issue(0);
  for (int i = 0; i < steps; ++i) {
    issue(i + 1);
    cp_async_wait<1>();
    __syncthreads();
    const int st = i & 1;
    const int kFirst = i * kKeys;
    bool skip = false, needMask = true;
    if constexpr (!kSparseMode) {
      const int wMin = s.queryStart + q0w;
      skip = kFirst > wMin + 15;
      needMask = kFirst + kKeys - 1 > wMin || kFirst + kKeys > listLen;
    }
    if (!skip) {
      const T* ks = Ks + st * kKeys * RW;
      float sc[8][4];
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.f;
#pragma unroll
      for (int kb = 0; kb < 4; ++kb) {
        const T* base = ks + (kb * 16 + (mi >> 1) * 8 + r8) * RW + (mi & 1) * 8;
#pragma unroll
        for (int kc = 0; kc < KC; ++kc) {
          uint32_t bf[4];
          ldmatrix_x4(bf, base + kc * 16);
          mma16816<T>(sc[2 * kb], qa[kc], bf[0], bf[1]);
          mma16816<T>(sc[2 * kb + 1], qa[kc], bf[2], bf[3]);
        }
      }
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float x0 = sc[nb][e] * qscale, x1 = sc[nb][2 + e] * qscale;
          if (needMask) {
            const int p = posS[st * kKeys + nb * 8 + quad * 2 + e];
            if (p < 0 || p > pos0) x0 = -INFINITY;
            if (p < 0 || p > pos1) x1 = -INFINITY;
          }
          sc[nb][e] = x0;
          sc[nb][2 + e] = x1;
          mx0 = fmaxf(mx0, x0);
          mx1 = fmaxf(mx1, x1);
        }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
      // A row with nothing visible yet keeps m = -inf: its probabilities are exp2(-inf) = 0.
      const float al0 = mn0 == -INFINITY ? 1.f : exp2f(m0 - mn0);
      const float al1 = mn1 == -INFINITY ? 1.f : exp2f(m1 - mn1);
      const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
      float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          sc[nb][e] = exp2f(sc[nb][e] - b0);
          sc[nb][2 + e] = exp2f(sc[nb][2 + e] - b1);
          rs0 += sc[nb][e];
          rs1 += sc[nb][2 + e];
        }
      l0 = l0 * al0 + rs0;
      l1 = l1 * al1 + rs1;
      m0 = mn0;
      m1 = mn1;
      if constexpr (kWithV) {
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          acc[nb][0] *= al0;
          acc[nb][1] *= al0;
          acc[nb][2] *= al1;
          acc[nb][3] *= al1;
        }
        const T* vs = Vs + st * kKeys * RW;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          uint32_t pa[4];
          pa[0] = pack2<T>(sc[2 * kk][0], sc[2 * kk][1]);
          pa[1] = pack2<T>(sc[2 * kk][2], sc[2 * kk][3]);
          pa[2] = pack2<T>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
          pa[3] = pack2<T>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
          const T* base = vs + (kk * 16 + (mi & 1) * 8 + r8) * RW + (mi >> 1) * 8;
#pragma unroll
          for (int nd = 0; nd < KC; ++nd) {
            uint32_t bf[4];
            ldmatrix_x4_trans(bf, base + nd * 16);
            mma16816<T>(acc[2 * nd], pa, bf[0], bf[1]);
            mma16816<T>(acc[2 * nd + 1], pa, bf[2], bf[3]);
          }
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if constexpr (kWriteStats) {
    if (quad == 0) {
      if (qi0 < Q) {
        a.stats[(qBase + qi0) * 2] = m0;
        a.stats[(qBase + qi0) * 2 + 1] = l0;
      }
      if (qi1 < Q) {
        a.stats[(qBase + qi1) * 2] = m1;
        a.stats[(qBase + qi1) * 2 + 1] = l1;
      }
    }
  }
  if constexpr (kWithV) {
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    T* o = static_cast<T*>(a.out);
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      if (qi0 < Q)
        *reinterpret_cast<uint32_t*>(o + (qBase + qi0) * D + nb * 8 + quad * 2) =
            pack2<T>(acc[nb][0] * inv0, acc[nb][1] * inv0);
      if (qi1 < Q)
        *reinterpret_cast<uint32_t*>(o + (qBase + qi1) * D + nb * 8 + quad * 2) =
            pack2<T>(acc[nb][2] * inv1, acc[nb][3] * inv1);
    }
  }
}

template <typename T, int D, int GS, int MODE, int WARPS>
static cudaError_t launch_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = attn_smem_bytes<T, D, MODE>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_attn_kernel<T, D, GS, MODE, WARPS>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  dim3 grid;
  if constexpr (MODE == kSparse) {
    grid = dim3(tiles_of(s), s.kvHeads * (2 * GS / WARPS), s.batch);
  } else {
    grid = dim3(ceil_div(s.queries, 16 * WARPS), s.heads, s.batch);
  }
  prefill_attn_kernel<T, D, GS, MODE, WARPS><<<grid, WARPS * 32, smem, st>>>(s, a);
  return cudaGetLastError();
}

int prefill_variant_number(const char* name) {
  if (name == nullptr || name[0] != 'v' || name[1] < '1' || name[1] > '9') return 0;
  char* end = nullptr;
  const long n = strtol(name + 1, &end, 10);
  return *end == '\0' && n < 1000 ? static_cast<int>(n) : 0;
}

// Defaults (DEFAULT_PREFILL_KERNELS in packages/cuda/src/prefill.ts says the same, preset v60): dense v22 (dense v9 in
// the dense modes, the four-warpgroup statistics-only pass of prefill_stats_v17.cu without a per-step row max) and
// sparse v61 (sparse v9 persistent, loading the list entries a step ahead; session 8's call B); where they do not apply
// (head dim 64; sparse at g != 4) launch_prefill_attention runs v1 (the kernel above). Attention variants: dense v1 and
// v22 (the default: dense v9 for dense and dense + statistics, the four-warpgroup statistics-only pass of
// prefill_stats_v17.cu against each thread's previous offset, no per-step row max); sparse v1, v12 (sparse v9 with its
// 3-stage ring, one CTA per item) and v61 (the default). Session 8 removed v58 (v61 without the entries ahead) and v62
// (v61 walking its items in a snake order). Session 7 removed dense v12 / v17 (session 5's statistics pass with a
// per-step row max) and sparse v17 (a 2-stage ring); sessions 2-6's v2-v11, v13-v16, v18-v20 and v24 lost earlier and
// are gone.
int prefill_variant(PrefillMode mode) {
  const int v = prefill_variant_number(getenv(mode == kSparse ? "KASCADE_PREFILL_SPARSE" : "KASCADE_PREFILL_DENSE"));
  const int best = mode == kSparse ? 61 : 22;
  if (mode == kSparse && v == 12) return v;
  return v == 1 || v == best ? v : best;  // unset or unknown: the default, as prefillKernels() reports it
}

cudaError_t launch_prefill_attention(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                     cudaStream_t st) {
  const int variant = prefill_variant(mode);
  // v22 / v12: the TMA + warp-specialised kernels at head dim 128 (dense v9 for dense and dense + statistics,
  // prefill_stats_v17.cu for the statistics-only pass, sparse v9 with its 3-stage ring for sparse at g = 4).
  if (variant >= 12) {
    if (mode == kStats && s.headDim == 128) return launch_prefill_stats_v17(s, a, st);
    if (prefill_dense_v9_supports(s, mode)) return launch_prefill_dense_v9(s, mode, a, st);
    if (mode == kSparse && prefill_sparse_v9_supports(s)) return launch_prefill_sparse_v9(s, a, variant, st);
  }
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      switch (mode) {
        case kDense: return launch_t<T, D, 1, kDense, 4>(s, a, st);
        case kDenseStats: return launch_t<T, D, 1, kDenseStats, 4>(s, a, st);
        case kStats: return launch_t<T, D, 1, kStats, 4>(s, a, st);
        case kSparse:
          return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
            constexpr int W = 2 * GS < 8 ? 2 * GS : 8;
            return launch_t<T, D, GS, kSparse, W>(s, a, st);
          });
      }
      return cudaErrorInvalidValue;
    });
  });
}

}  // namespace pf
}  // namespace kascade

using namespace kascade;
using namespace kascade::pf;

extern "C" cudaError_t kascade_prefill_check_shape(const KascadePrefillShape* s, char* why) {
  auto fail = [&](const char* msg) {
    if (why) snprintf(why, 256, "%s", msg);
    return cudaErrorInvalidValue;
  };
  if (s->batch < 1 || s->batch > 65535) return fail("batch must be in 1..65535");
  if (s->kvHeads < 1 || s->kvHeads > pf::kMaxKvHeads) return fail("kvHeads must be in 1..64");
  if (s->heads % s->kvHeads != 0) return fail("heads must be a multiple of kvHeads");
  const int g = s->heads / s->kvHeads;
  if (g != 1 && g != 2 && g != 4 && g != 8) return fail("group size heads/kvHeads must be 1, 2, 4 or 8");
  if (s->headDim != 64 && s->headDim != 128) return fail("headDim must be 64 or 128");
  if (s->tileSize != KASCADE_PREFILL_TILE) return fail("tileSize must be 32 (the kernels' query tile)");
  if (s->queries < 1) return fail("queries must be at least 1");
  if (s->queryStart < 0 || s->queryStart % KASCADE_PREFILL_TILE != 0)
    return fail("queryStart must be a non-negative multiple of tileSize");
  if (static_cast<long long>(s->queryStart) + s->queries > s->capacity)
    return fail("capacity must be >= queryStart + queries");
  if (s->dtype != KASCADE_F16 && s->dtype != KASCADE_BF16) return fail("dtype must be f16 or bf16");
  if (!(s->scale > 0.f)) return fail("scale must be positive");
  return cudaSuccess;
}

extern "C" cudaError_t kascade_dense_prefill(const KascadePrefillShape* s, const void* q, const void* k,
                                             const void* v, void* out, float* stats, cudaStream_t st) {
  const cudaError_t e = kascade_prefill_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  PrefillArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.stats = stats;
  return launch_prefill_attention(*s, stats ? kDenseStats : kDense, a, st);
}

extern "C" cudaError_t kascade_reuse_prefill(const KascadePrefillShape* s, const void* q, const void* k,
                                             const void* v, void* out, const int* counts, int kMax,
                                             const int* indices, int selKvHeads, const int* headMap,
                                             cudaStream_t st) {
  const cudaError_t e = kascade_prefill_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  if (kMax < 1 || selKvHeads < 1 || selKvHeads > pf::kMaxKvHeads || !counts || !indices || !headMap)
    return cudaErrorInvalidValue;
  PrefillArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.counts = counts;
  a.indices = indices;
  a.kMax = kMax;
  a.selKvHeads = selKvHeads;
  for (int j = 0; j < s->kvHeads; ++j) {
    if (headMap[j] < 0 || headMap[j] >= selKvHeads) return cudaErrorInvalidValue;
    a.headMap[j] = headMap[j];
  }
  return launch_prefill_attention(*s, kSparse, a, st);
}
