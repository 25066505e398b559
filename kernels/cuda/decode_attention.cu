// Split-KV decode attention (dense, gathered/sparse, scores-only) and the split combine.
//
// Kernel attn_partial_kernel<T, D, GS, MODE>
//   grid  (splits, kvHeads, batch), block 128 threads (4 warps); one block = one KV head j of
//   one sequence b, all GS query heads of its group, one contiguous range of the key list.
//   GQA-aware: each K/V row is read from HBM once per group (into shared memory), not once per
//   query head.
//   Per 64-key tile: K (and V) rows -> shared memory with 16-byte cp.async, two stages
//   (the next tile is in flight while this one is computed). Thread t scores key t%64 for
//   query heads t/64, t/64+2, ...; each warp then updates the online softmax (max/sum, log2
//   domain) of heads w, w+4; for P.V, warp w takes keys 16w..16w+15 and each lane 4 (D=128)
//   or 2 (D=64) output dims of every head.
//   Shared memory: 2 stages x 64 x (D+8) x 2 B for K and again for V (the +8 pad keeps the
//   16-byte row reads of a quarter-warp on distinct banks), q in f32, the tile's scores.
//   Bytes: reads the listed K rows (+ V rows unless scores-only) once, q once per block;
//   writes GS x (D + 2) f32 per block, plus GS f32 logits per key when asked.
// Kernel combine_kernel<T, D>
//   grid (batch x heads), block D threads: merges the splits' (max, sum, unnormalised out).
#include <cstdio>

#include "decode_attention.cuh"

namespace kascade {

template <int D>
struct Cfg {
  static constexpr int kThreads = 128;
  static constexpr int kStages = 2;
  static constexpr int kRow = D + 8;         // padded row, in elements
  static constexpr int kChunksPerRow = D / 8;  // 16-byte chunks per row
  static constexpr int kDimsPerLane = D / 32;
};

template <typename T, int D, int GS, int MODE>
constexpr size_t partial_smem_bytes() {
  using C = Cfg<D>;
  const size_t kv = size_t(C::kStages) * kTile * C::kRow * sizeof(T);
  return kv * (MODE == kScoresOnly ? 1 : 2) + sizeof(float) * (GS * D + GS * kTile + 3 * GS);
}

template <typename T, int D, int GS, int MODE>
__global__ void __launch_bounds__(128) attn_partial_kernel(KascadeDecodeShape s, PartialArgs a) {
  using C = Cfg<D>;
  constexpr bool kGatherMode = MODE == kGather;
  constexpr bool kWithV = MODE != kScoresOnly;
  constexpr bool kWriteLogits = MODE == kDenseLogits || MODE == kScoresOnly;
  constexpr int kStageElems = kTile * C::kRow;
  constexpr int DPL = C::kDimsPerLane;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + C::kStages * kStageElems;
  float* qs = reinterpret_cast<float*>(Ks + C::kStages * kStageElems * (kWithV ? 2 : 1));
  float* sc = qs + GS * D;      // [GS][kTile]
  float* mst = sc + GS * kTile;  // [GS]
  float* lst = mst + GS;         // [GS]
  float* alp = lst + GS;         // [GS]

  const int split = blockIdx.x, j = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int H = s.heads, G = s.kvHeads, n = s.n;
  const int listLen = kGatherMode ? a.topk : n;
  const int begin = split * a.chunk;
  const int end = min(listLen, begin + a.chunk);
  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const int* idx = nullptr;
  if constexpr (kGatherMode) {
    idx = a.indices + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * a.topk;
  }
  const size_t bh0 = static_cast<size_t>(b) * H + static_cast<size_t>(j) * GS;

  const float qscale = s.scale * kLog2e;
  const T* qg = static_cast<const T*>(a.q) + bh0 * D;
  for (int i = tid; i < GS * D; i += C::kThreads) qs[i] = to_float(qg[i]) * qscale;
  if (tid < GS) {
    mst[tid] = -INFINITY;
    lst[tid] = 0.f;
    alp[tid] = 1.f;
  }

  auto key_pos = [&](int li, bool& ok) -> int {
    ok = li < end;
    if (!ok) return 0;
    if constexpr (kGatherMode) {
      const int p = __ldg(idx + li);
      ok = p >= 0 && p < n;  // an out-of-range index is masked, never read
      return ok ? p : 0;
    }
    return li;
  };
  auto load_tile = [&](int t, int stage) {
    const int base = begin + t * kTile;
#pragma unroll
    for (int c = tid; c < kTile * C::kChunksPerRow; c += C::kThreads) {
      const int r = c / C::kChunksPerRow, col = (c % C::kChunksPerRow) * 8;
      bool ok;
      const int pos = key_pos(base + r, ok);
      const size_t off = static_cast<size_t>(pos) * D + col;
      cp_async16(Ks + stage * kStageElems + r * C::kRow + col, kg + off, ok ? 16 : 0);
      if constexpr (kWithV) cp_async16(Vs + stage * kStageElems + r * C::kRow + col, vg + off, ok ? 16 : 0);
    }
  };

  float acc[GS][DPL];
#pragma unroll
  for (int h = 0; h < GS; ++h)
#pragma unroll
    for (int e = 0; e < DPL; ++e) acc[h][e] = 0.f;

  const int ntiles = end > begin ? (end - begin + kTile - 1) / kTile : 0;
  if (ntiles > 0) {
    load_tile(0, 0);
    cp_async_commit();
  }
  for (int t = 0; t < ntiles; ++t) {
    const int stage = t & 1;
    if (t + 1 < ntiles) {
      load_tile(t + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // Scores: thread -> (key kk, every other head starting at hg).
    {
      constexpr int HPT = GS > 1 ? GS / 2 : 1;
      const int kk = tid & (kTile - 1);
      const int hg = tid / kTile;
      if (GS > 1 || hg == 0) {
        bool valid;
        const int pos = key_pos(begin + t * kTile + kk, valid);
        float d[HPT];
#pragma unroll
        for (int i = 0; i < HPT; ++i) d[i] = 0.f;
        const T* kr = Ks + stage * kStageElems + kk * C::kRow;
#pragma unroll
        for (int c = 0; c < C::kChunksPerRow; ++c) {
          const uint4 raw = *reinterpret_cast<const uint4*>(kr + c * 8);
          float kf[8];
          to_float8(raw, kf, T());
#pragma unroll
          for (int i = 0; i < HPT; ++i) {
            const int h = GS > 1 ? hg + 2 * i : 0;
            const float4 q0 = *reinterpret_cast<const float4*>(qs + h * D + c * 8);
            const float4 q1 = *reinterpret_cast<const float4*>(qs + h * D + c * 8 + 4);
            d[i] += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] +
                    q1.y * kf[5] + q1.z * kf[6] + q1.w * kf[7];
          }
        }
#pragma unroll
        for (int i = 0; i < HPT; ++i) {
          const int h = GS > 1 ? hg + 2 * i : 0;
          const float sv = valid ? d[i] : -INFINITY;
          sc[h * kTile + kk] = sv;
          if constexpr (kWriteLogits) {
            if (valid) a.logits[(bh0 + h) * static_cast<size_t>(n) + pos] = sv;
          }
        }
      }
    }
    __syncthreads();

    // Online softmax: warp w owns heads w, w+4.
    for (int h = warp; h < GS; h += 4) {
      const float v0 = sc[h * kTile + lane], v1 = sc[h * kTile + lane + 32];
      const float tm = warp_max(fmaxf(v0, v1));
      const float mo = mst[h];
      const float mn = fmaxf(mo, tm);
      float p0 = 0.f, p1 = 0.f, al = 1.f;
      if (mn != -INFINITY) {
        p0 = exp2f(v0 - mn);
        p1 = exp2f(v1 - mn);
        al = exp2f(mo - mn);
      }
      const float ps = warp_sum(p0 + p1);
      if constexpr (kWithV) {
        sc[h * kTile + lane] = p0;
        sc[h * kTile + lane + 32] = p1;
      }
      if (lane == 0) {
        mst[h] = mn;
        lst[h] = lst[h] * al + ps;
        alp[h] = al;
      }
    }

    if constexpr (kWithV) {
      __syncthreads();
#pragma unroll
      for (int h = 0; h < GS; ++h) {
        const float al = alp[h];
#pragma unroll
        for (int e = 0; e < DPL; ++e) acc[h][e] *= al;
      }
      const int k0 = warp * (kTile / 4);
#pragma unroll 4
      for (int kk = k0; kk < k0 + kTile / 4; ++kk) {
        const T* vr = Vs + stage * kStageElems + kk * C::kRow + lane * DPL;
        float vf[DPL];
        if constexpr (DPL == 4) {
          const uint2 raw = *reinterpret_cast<const uint2*>(vr);
          to_float2(raw.x, vf, T());
          to_float2(raw.y, vf + 2, T());
        } else {
          const uint32_t raw = *reinterpret_cast<const uint32_t*>(vr);
          to_float2(raw, vf, T());
        }
#pragma unroll
        for (int h = 0; h < GS; ++h) {
          const float p = sc[h * kTile + kk];
#pragma unroll
          for (int e = 0; e < DPL; ++e) acc[h][e] = fmaf(p, vf[e], acc[h][e]);
        }
      }
    }
    __syncthreads();
  }
  __syncthreads();

  if (tid < GS) {
    float* ml = a.part_ml + ((bh0 + tid) * a.splits + split) * 2;
    ml[0] = mst[tid];
    ml[1] = lst[tid];
  }
  if constexpr (kWithV) {
    float* red = reinterpret_cast<float*>(smem_raw);  // [4 warps][GS][D], over the K stages
#pragma unroll
    for (int h = 0; h < GS; ++h)
#pragma unroll
      for (int e = 0; e < DPL; ++e) red[(warp * GS + h) * D + lane * DPL + e] = acc[h][e];
    __syncthreads();
    for (int i = tid; i < GS * D; i += C::kThreads) {
      const int h = i / D, d = i % D;
      const float sum = red[(0 * GS + h) * D + d] + red[(1 * GS + h) * D + d] +
                        red[(2 * GS + h) * D + d] + red[(3 * GS + h) * D + d];
      a.part_o[((bh0 + h) * a.splits + split) * D + d] = sum;
    }
  }
}

template <typename T, int D>
__global__ void combine_kernel(int splits, const float* __restrict__ part_o,
                               const float* __restrict__ part_ml, T* __restrict__ out) {
  const size_t bh = blockIdx.x;
  const int d = threadIdx.x;
  const float* ml = part_ml + bh * splits * 2;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, ml[2 * s]);
  float L = 0.f, o = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float m = ml[2 * s];
    if (m == -INFINITY) continue;
    const float w = exp2f(m - M);
    L = fmaf(ml[2 * s + 1], w, L);
    o = fmaf(part_o[(bh * splits + s) * D + d], w, o);
  }
  out[bh * D + d] = from_float<T>(o / L);
}

int device_sm_count() {
  static int cached = -1;
  if (cached < 0) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 132;
    }
    cached = sms;
  }
  return cached;
}

int attn_splits(const KascadeDecodeShape& s, int listLen, int* chunk) {
  if (listLen <= 0) {
    *chunk = kTile;
    return 1;
  }
  const int bg = s.batch * s.kvHeads;
  int S = s.splits > 0 ? s.splits : ceil_div(4LL * device_sm_count() * 2, bg);
  S = max(1, min(S, ceil_div(listLen, kMinKeysPerSplit)));
  const int c = ceil_div(ceil_div(listLen, S), kTile) * kTile;
  *chunk = c;
  return ceil_div(listLen, c);
}

template <typename T, int D, int GS, int MODE>
static cudaError_t launch_partial_t(const KascadeDecodeShape& s, const PartialArgs& a, cudaStream_t st) {
  constexpr size_t smem = partial_smem_bytes<T, D, GS, MODE>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(attn_partial_kernel<T, D, GS, MODE>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  const dim3 grid(a.splits, s.kvHeads, s.batch);
  attn_partial_kernel<T, D, GS, MODE><<<grid, Cfg<D>::kThreads, smem, st>>>(s, a);
  return cudaGetLastError();
}

cudaError_t launch_partial(const KascadeDecodeShape& s, AttnMode mode, const PartialArgs& a, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        switch (mode) {
          case kDense: return launch_partial_t<T, D, GS, kDense>(s, a, st);
          case kDenseLogits: return launch_partial_t<T, D, GS, kDenseLogits>(s, a, st);
          case kScoresOnly: return launch_partial_t<T, D, GS, kScoresOnly>(s, a, st);
          case kGather: return launch_partial_t<T, D, GS, kGather>(s, a, st);
        }
        return cudaErrorInvalidValue;
      });
    });
  });
}

cudaError_t launch_combine(const KascadeDecodeShape& s, int splits, const float* part_o,
                           const float* part_ml, void* out, cudaStream_t st) {
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      combine_kernel<T, D><<<s.batch * s.heads, D, 0, st>>>(splits, part_o, part_ml, static_cast<T*>(out));
      return cudaGetLastError();
    });
  });
}

static size_t align256(size_t x) { return (x + 255) & ~static_cast<size_t>(255); }

Workspace workspace_layout(const KascadeDecodeShape& s, int topk, void* base) {
  int c;
  int S = attn_splits(s, s.n, &c);
  if (topk > 0) S = max(S, attn_splits(s, topk, &c));
  const size_t BH = static_cast<size_t>(s.batch) * s.heads, BG = static_cast<size_t>(s.batch) * s.kvHeads;
  const size_t n = static_cast<size_t>(s.n);
  size_t sizes[6] = {BH * S * s.headDim * 4, BH * S * 2 * 4, topk > 0 ? BH * n * 4 : 0,
                     topk > 0 ? BG * n * 4 : 0, BG * kHistBins * 4, BG * 4 * 4};
  Workspace w{};
  size_t off = 0;
  char* p = static_cast<char*>(base);
  void** slots[6] = {reinterpret_cast<void**>(&w.part_o), reinterpret_cast<void**>(&w.part_ml),
                     reinterpret_cast<void**>(&w.logits), reinterpret_cast<void**>(&w.pooled),
                     reinterpret_cast<void**>(&w.hist), reinterpret_cast<void**>(&w.state)};
  for (int i = 0; i < 6; ++i) {
    *slots[i] = p ? p + off : nullptr;
    off += align256(sizes[i]);
  }
  w.bytes = off;
  return w;
}

}  // namespace kascade

using namespace kascade;

extern "C" size_t kascade_decode_workspace_bytes(const KascadeDecodeShape* s, int topk) {
  return workspace_layout(*s, topk, nullptr).bytes;
}

extern "C" cudaError_t kascade_check_shape(const KascadeDecodeShape* s, char* why) {
  auto fail = [&](const char* msg) {
    if (why) snprintf(why, 256, "%s", msg);
    return cudaErrorInvalidValue;
  };
  if (s->batch < 1 || s->batch > 65535) return fail("batch must be in 1..65535");
  if (s->kvHeads < 1 || s->kvHeads > kMaxKvHeads) return fail("kvHeads must be in 1..64");
  if (s->heads % s->kvHeads != 0) return fail("heads must be a multiple of kvHeads");
  const int g = s->heads / s->kvHeads;
  if (g != 1 && g != 2 && g != 4 && g != 8) return fail("group size heads/kvHeads must be 1, 2, 4 or 8");
  if (s->headDim != 64 && s->headDim != 128) return fail("headDim must be 64 or 128");
  if (s->n < 1) return fail("n must be at least 1");
  if (s->capacity < s->n) return fail("capacity must be >= n");
  if (s->dtype != KASCADE_F16 && s->dtype != KASCADE_BF16) return fail("dtype must be f16 or bf16");
  if (!(s->scale > 0.f)) return fail("scale must be positive");
  return cudaSuccess;
}

extern "C" cudaError_t kascade_dense_decode(const KascadeDecodeShape* s, const void* q, const void* k,
                                            const void* v, void* out, void* workspace, size_t wsBytes,
                                            cudaStream_t st) {
  cudaError_t e = kascade_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  const Workspace w = workspace_layout(*s, 0, workspace);
  if (wsBytes < w.bytes) return cudaErrorInvalidValue;
  PartialArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.part_o = w.part_o;
  a.part_ml = w.part_ml;
  a.splits = attn_splits(*s, s->n, &a.chunk);
  if ((e = launch_partial(*s, kDense, a, st)) != cudaSuccess) return e;
  return launch_combine(*s, a.splits, w.part_o, w.part_ml, out, st);
}

extern "C" cudaError_t kascade_reuse_decode(const KascadeDecodeShape* s, const void* q, const void* k,
                                            const void* v, void* out, int topk, const int* indices,
                                            int selKvHeads, const int* headMap, void* workspace,
                                            size_t wsBytes, cudaStream_t st) {
  cudaError_t e = kascade_check_shape(s, nullptr);
  if (e != cudaSuccess) return e;
  if (topk < 1 || topk > s->n || selKvHeads < 1 || selKvHeads > kMaxKvHeads) return cudaErrorInvalidValue;
  const Workspace w = workspace_layout(*s, 0, workspace);  // topk <= n: the dense split buffers fit
  if (wsBytes < w.bytes) return cudaErrorInvalidValue;
  PartialArgs a{};
  a.q = q;
  a.k = k;
  a.v = v;
  a.indices = indices;
  a.topk = topk;
  a.selKvHeads = selKvHeads;
  for (int j = 0; j < s->kvHeads; ++j) {
    if (headMap[j] < 0 || headMap[j] >= selKvHeads) return cudaErrorInvalidValue;
    a.headMap[j] = headMap[j];
  }
  a.part_o = w.part_o;
  a.part_ml = w.part_ml;
  a.splits = attn_splits(*s, topk, &a.chunk);
  if ((e = launch_partial(*s, kGather, a, st)) != cudaSuccess) return e;
  return launch_combine(*s, a.splits, w.part_o, w.part_ml, out, st);
}
