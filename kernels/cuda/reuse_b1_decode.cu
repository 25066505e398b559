// The warp-specialised gather (KASCADE_VARIANT_GATHER_WS, cuda-b1, fifth session): sparse attention over
// the rows an index list names (reuse, and the anchors' sparse pass), built for batch 1, where 8 KV heads
// x 13107 selected rows (54 MB at 128k) must keep the whole GPU's DRAM busy.
//
// Kernel gather_ws_kernel<T, D, GS, DYN, LG>
//   grid (splits, kvHeads, batch), block 256 threads = 4 consumer warps + 4 producer warps; one block =
//   one KV head j of one sequence b, all GS query heads of its group (ws_splits: the rows' splits fill
//   the CTAs resident at once). Each stage of a shared ring holds 64 entries; consumer w and producer w
//   own entries 16 w .. 16 w + 15 of every stage (one 16-entry group), with a `full` and an `empty`
//   mbarrier per stage and pair. Which groups a pair takes: static (DYN false), the block's range
//   [split chunk, (split + 1) chunk) cut into stages; dynamic (DYN, the default), a few fixed groups
//   and then groups taken from the row's counter (below, at WsCfg).
//   - Producer w (warp 4 + w): reads its 16 indices of the next kStages stages ahead into registers,
//     waits until the stage's slot is free (`empty`), stores the positions and the group's first entry
//     (-1: no groups left, the consumer stops), and issues one 256-byte
//     (D 128) cp.async.bulk per K row (lanes 0-15) and per V row (lanes 16-31), completing on `full`
//     by transaction bytes. A masked row (an out-of-range index, or past the range inside a live
//     16-entry group) copies row 0 of the head (finite; its probability is 0).
//   - Consumer w (warp w): waits on `full`, runs attend16 (S = Q K^T and O += P V with mma.sync, the
//     online softmax in the log2 domain; the same arithmetic as attn_partial_kernel's gathers), then
//     arrives on `empty`.
//   The copies cost a few instructions per 512 bytes (K and V row), where attn_partial_kernel's
//   16-byte cp.async gathers issue ~660 instructions per warp per 16-key step (session 4's ncu).
//   Shared memory at D 128: a 3-stage ring of 64 K and 64 V rows (padded to D + 8 elements), 105 KB:
//   two CTAs per SM. D 64: 6 stages.
//   End: the 4 consumers merge through shared memory (merge_warps), the block stores its partial
//   (m, l, o) in slot `split`, and the row's last block to finish merges the slots (merge_row_if_last,
//   its own counters g_ws_done). Beyond kMaxFusedRows rows (or slots whose weights would not fit in the
//   ring) the combine kernel merges instead.
//   Honoured variant bits: 32 (16-bit P). The other bits do not change this kernel.
#include <cstdlib>
#include <cstring>

#include "decode_attention.cuh"
#include "decode_device.cuh"

namespace kascade {

// The layout: 4 consumer warps and 4 producer warps (producer w fills consumer w's 16 rows of each stage,
// with its own full / empty barriers per stage); 3 stages at D 128 (6 at D 64), ~105 KB: two CTAs per SM
// (at most 128 registers). Call B of session 5 (H200, 128k batch 1, event-timed reuse): 23.2 us; 6 stages
// and one CTA per SM 25.6 us (removed in session 6); one producer warp per block with bulk copies (two or
// three CTAs per SM): 37.1 / 30.6 us; four producers with 16-byte cp.async arriving on the stage barrier:
// 31.8 us.
//
// The schedule (DYN): ncu of session 5 (call C) showed the static ranges' SMs busy 69 % of the kernel on
// average, the busiest 27 % above the average and the least busy 23 % below: with one wave of CTAs, the
// slowest SM sets the time. With DYN (the default since session 6; KASCADE_WS_CONFIG=static runs the
// static ranges, a tuning knob read per call) each producer's first kStages 16-entry groups are fixed
// (pair p of split s: groups ((s x 4 + p) x kStages + u)), and every later group is taken from the row's
// counter (g_ws_next, one atomicAdd of 16 per group, issued two stages before its indices are needed), so
// fast pairs take more groups. The row's last block to finish taking resets the counter (g_ws_quit).
template <int D>
struct WsCfg {
  static constexpr int kConsumers = 4;
  static constexpr int kProducers = 4;
  static constexpr int kThreads = 32 * (kConsumers + kProducers);
  static constexpr int kStageKeys = 16 * kConsumers;  // list entries per ring stage
  static constexpr int kRow = D + 8;                  // padded row (elements): ldmatrix rows on distinct banks
  static constexpr int kStages = D == 128 ? 3 : 6;
  static constexpr int kMinBlocks = 2;
};

// Shared memory: the K ring [kStages][kStageKeys][kRow], the V ring likewise (the consumers' partials
// reuse it at the end), then the positions [kStages][kStageKeys] and the full / empty mbarriers.
template <typename T, int D, int GS>
__host__ __device__ constexpr size_t ws_region_bytes() {
  using C = WsCfg<D>;
  const size_t ring = size_t(2) * C::kStages * C::kStageKeys * C::kRow * sizeof(T);
  const size_t red = sizeof(float) * (size_t(C::kConsumers) * GS * (D + 2));
  return ((ring > red ? ring : red) + 15) / 16 * 16;
}
template <typename T, int D, int GS>
__host__ __device__ constexpr size_t ws_smem_bytes() {
  using C = WsCfg<D>;
  return ws_region_bytes<T, D, GS>() + size_t(C::kStages) * (C::kStageKeys + C::kProducers) * sizeof(int) +
         size_t(2) * C::kStages * C::kProducers * sizeof(uint64_t);
}

// Completion counters of the fused merge: zero at module load, reset by the block that merges. DYN: the
// rows' next dynamic group (entries past the fixed ones) and how many blocks have stopped taking groups.
__device__ unsigned g_ws_done[kMaxFusedRows];
__device__ int g_ws_next[kMaxFusedRows];
__device__ unsigned g_ws_quit[kMaxFusedRows];

template <typename T, int D, int GS, bool DYN, bool LG>
__global__ void __launch_bounds__(WsCfg<D>::kThreads, WsCfg<D>::kMinBlocks)
    gather_ws_kernel(KascadeDecodeShape s, PartialArgs a, int fused) {
  using C = WsCfg<D>;
  constexpr int NS = C::kStages, SK = C::kStageKeys, R = C::kRow, NC = C::kConsumers, NP = C::kProducers;
  constexpr unsigned kRowBytes = D * sizeof(T);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + NS * SK * R;
  float* lgS = reinterpret_cast<float*>(Ks);  // LG: [stage][entry][GS] logits where the K ring would be
  int* posS = reinterpret_cast<int*>(smem_raw + ws_region_bytes<T, D, GS>());
  int* groupS = posS + NS * SK;  // DYN: [stage][producer] the group's first entry, -1: no more groups
  // Barriers [stage][producer]: `full` completes when the producer's 16 rows of the stage have landed,
  // `empty` when its consumer has read them.
  uint64_t* full = reinterpret_cast<uint64_t*>(groupS + NS * NP);
  uint64_t* empty = full + NS * NP;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    for (int i = 0; i < NS * NP; ++i) {
      mbar_init(full + i, 1);
      mbar_init(empty + i, 1);
    }
  }
  mbar_fence_init();
  __syncthreads();

  const int split = blockIdx.x, j = blockIdx.y, b = blockIdx.z;
  const int G = s.kvHeads, n = s.n;
  const int begin = split * a.chunk, end = min(a.topk, begin + a.chunk);
  const size_t rowId = static_cast<size_t>(b) * G + j;
  const size_t kvBase = rowId * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t bh0 = static_cast<size_t>(b) * s.heads + static_cast<size_t>(j) * GS;

  float m = -INFINITY, l = 0.f;
  float acc[D / 8][2];
#pragma unroll
  for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] = acc[nb][1] = 0.f;

  if (warp >= NC) {
    // Producer pr: 16-entry groups, one per stage; lane l the K row (l < 16) or the V row (l >= 16) l % 16.
    // Slot u keeps, for the stage it issues next, the group's first entry gs[u] (-1: none left) and the
    // lanes' raw indices q[u] (the loop is unrolled by NS so no register move waits on a load; the range
    // check happens at issue), and with DYN lane 0's counter value ga[u] for the stage after that.
    const int pr = warp - NC, row = lane & 15;
    const int* idx = a.indices + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * a.topk;
    const int lim = DYN ? a.topk : end;
    const int dyn0 = a.splits * NP * NS * 16;  // DYN: the entries before this are the fixed groups
    int* next = g_ws_next + rowId;
    auto group_at = [&](int i) -> int {  // the fixed groups (static: all of them)
      const int g = DYN ? ((split * NP + pr) * NS + i) * 16 : begin + i * SK + pr * 16;
      return g < lim ? g : -1;
    };
    auto load_raw = [&](int g) -> int { return g >= 0 && g + row < lim ? __ldg(idx + g + row) : -1; };
    int gs[NS], q[NS], ga[NS];
#pragma unroll
    for (int u = 0; u < NS; ++u) {
      gs[u] = group_at(u);
      q[u] = load_raw(gs[u]);
      ga[u] = 0;
      if (DYN && lane == 0 && gs[u] >= 0 && dyn0 < lim) ga[u] = atomicAdd(next, 16);
    }
    bool done = false;
    for (int i0 = 0; !done; i0 += NS) {
#pragma unroll
      for (int u = 0; u < NS; ++u) {
        const int i = i0 + u;
        uint64_t* fb = full + u * NP + pr;
        if (i >= NS) mbar_wait(empty + u * NP + pr, static_cast<unsigned>(i / NS - 1) & 1u);
        const int g = gs[u];
        if (lane == 0) groupS[u * NP + pr] = g;
        if (g < 0) {
          __syncwarp();
          if (lane == 0) mbar_arrive_expect_tx(fb, 0u);  // the consumer reads -1 and stops
          done = true;
          break;
        }
        const int raw = q[u];
        const int p = (raw >= 0 && raw < n) ? raw : -1;  // an out-of-range index is masked, never read
        // Slot u's next stage, i + NS.
        int gn;
        if (DYN) {
          gn = dyn0 + __shfl_sync(0xffffffffu, ga[u], 0);
          gn = gs[u] >= 0 && dyn0 < lim && gn < lim ? gn : -1;
          if (lane == 0 && gn >= 0) ga[u] = atomicAdd(next, 16);
        } else {
          gn = group_at(i + NS);
        }
        gs[u] = gn;
        q[u] = load_raw(gn);
        if (lane < 16) posS[u * SK + pr * 16 + row] = p;
        const int e0 = u * SK + pr * 16 + row;
        if (LG && lane < 16) {
          // The entry's GS logits (4-byte cp.async; none for a masked entry), tracked by `full`: the
          // arrive-on below raises its pending count until they land (before lane 0's arrive).
          if (p >= 0)
#pragma unroll
            for (int h = 0; h < GS; ++h) cp_async4(lgS + e0 * GS + h, a.logits + (bh0 + h) * n + p);
          cp_async_mbar_arrive(fb);
        }
        // A masked row (out of range, or past the list inside the group) copies row 0: finite, probability 0.
        __syncwarp();
        if (lane == 0) mbar_arrive_expect_tx(fb, (LG ? 16u : 32u) * kRowBytes);
        const size_t off = static_cast<size_t>(p < 0 ? 0 : p) * D;
        if (lane >= 16) {
          bulk_g2s(Vs + e0 * R, vg + off, kRowBytes, fb);
        } else if (!LG) {
          bulk_g2s(Ks + e0 * R, kg + off, kRowBytes, fb);
        }
      }
    }
    if (DYN) __threadfence();  // this producer's counter updates before the block's quit count
  } else {
    // Consumers.
    uint32_t qa[D / 16][4];
    if (!LG) load_q_operand<T, D, GS>(static_cast<const T*>(a.q) + bh0 * D, qa);
    const float qscale = s.scale * kLog2e;
    const bool p16 = (a.variant & KASCADE_VARIANT_P16) != 0;
    const int pw = warp;  // the producer of this consumer's rows
    for (int i = 0;; ++i) {
      const int st = i % NS;
      mbar_wait(full + st * NP + pw, static_cast<unsigned>(i / NS) & 1u);
      __syncwarp();
      if (groupS[st * NP + pw] < 0) break;
      const int r0 = st * SK + warp * 16;
      if (LG)
        attend16_logits<T, D, GS, R>(lgS + r0 * GS, Vs + r0 * R, posS + r0, p16, m, l, acc);
      else
        attend16<T, D, R>(qa, Ks + r0 * R, Vs + r0 * R, posS + r0, qscale, p16, m, l, acc);
      __syncwarp();
      if (lane == 0) mbar_arrive(empty + st * NP + pw);
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
  }
  __syncthreads();  // every copy has landed (the consumers waited on each stage): the ring is free
  if (DYN && tid == 0) {
    // The row's last block to stop taking groups resets its counters for the next launch.
    __threadfence();
    if (atomicAdd(g_ws_quit + rowId, 1u) == static_cast<unsigned>(a.splits) - 1u) {
      g_ws_quit[rowId] = 0u;
      g_ws_next[rowId] = 0;
    }
  }

  float* red_o = reinterpret_cast<float*>(smem_raw);
  float* red_ml = red_o + NC * GS * D;
  merge_warps<D, GS, NC, C::kThreads>(
      red_o, red_ml, m, l, acc,
      [&](int h, float M, float L) {
        float* ml = a.part_ml + ((bh0 + h) * a.splits + split) * 2;
        ml[0] = M;
        ml[1] = L;
      },
      [&](int e, float o) { a.part_o[((bh0 + e / D) * a.splits + split) * D + e % D] = o; });
  // The weights reuse red_o (merge_row_if_last's barriers come after every thread's reads above).
  if (fused)
    merge_row_if_last<T, D, GS, C::kThreads>(g_ws_done + (static_cast<size_t>(b) * G + j), a.splits, a.splits,
                                             a.part_o, a.part_ml, bh0, static_cast<T*>(a.out), red_o, true);
}

// CTAs of the warp-specialised gather resident per SM (occupancy, queried once per instantiation),
// capped at kLeanMaxCtasPerSm (the workspace's partial slots are sized for that).
template <typename T, int D, int GS, bool DYN, bool LG>
static int ws_ctas_per_sm(cudaError_t* err) {
  static int perSm = 0;
  if (perSm == 0) {
    constexpr size_t smem = ws_smem_bytes<T, D, GS>();
    cudaError_t e = cudaFuncSetAttribute(gather_ws_kernel<T, D, GS, DYN, LG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    int nb = 0;
    if (e == cudaSuccess)
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, gather_ws_kernel<T, D, GS, DYN, LG>, WsCfg<D>::kThreads, smem);
    if (e != cudaSuccess) {
      *err = e;
      return 0;
    }
    perSm = nb < 1 ? 1 : (nb > kLeanMaxCtasPerSm ? kLeanMaxCtasPerSm : nb);
  }
  return perSm;
}

template <typename T, int D, int GS, bool DYN, bool LG>
static cudaError_t launch_ws(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st) {
  cudaError_t e = cudaSuccess;
  const int perSm = ws_ctas_per_sm<T, D, GS, DYN, LG>(&e);
  if (e != cudaSuccess) return e;
  a.splits = ws_splits(s, a.topk, perSm, &a.chunk);
  const bool fused = static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows &&
                     sizeof(float) * GS * static_cast<size_t>(a.splits) <= ws_region_bytes<T, D, GS>();
  gather_ws_kernel<T, D, GS, DYN, LG><<<dim3(a.splits, s.kvHeads, s.batch), WsCfg<D>::kThreads,
                                        ws_smem_bytes<T, D, GS>(), st>>>(s, a, fused ? 1 : 0);
  e = cudaGetLastError();
  if (e != cudaSuccess || fused) return e;
  return launch_combine(s, a.splits, a.part_o, a.part_ml, out, st);
}

int ws_splits(const KascadeDecodeShape& s, int listLen, int perSm, int* chunk) {
  const long long rows = static_cast<long long>(s.batch) * s.kvHeads;
  if (s.splits > 0) {  // forced (tuning): `splits` per row, whole 16-key groups
    const long long forced = static_cast<long long>(s.splits) * rows;
    return grain_split_count(rows, listLen, forced, kWsGroup, chunk);
  }
  return grain_split_count(rows, listLen, static_cast<long long>(perSm) * device_sm_count(), kWsGroup, chunk);
}

cudaError_t launch_gather_ws(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  a.out = out;
  // The dynamic schedule where the rows' counters exist (at most kMaxFusedRows rows); tuning only:
  // KASCADE_WS_CONFIG=static runs the static ranges (read per call). With the anchors' logits (a.logits set
  // by the anchor's sparse pass), the scores come from them and only V rows are copied (dynamic schedule
  // only; tuning: KASCADE_SPARSE_LOGITS=0 copies K rows and recomputes the scores).
  const char* env = std::getenv("KASCADE_WS_CONFIG");
  const bool dyn = !(env && std::strcmp(env, "static") == 0) &&
                   static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows;
  // (KASCADE_B1_SELECT=grid, the b1 select's tuning kernel, keeps its candidates in the logits buffer.)
  const char* envLg = std::getenv("KASCADE_SPARSE_LOGITS");
  const char* envSel = std::getenv("KASCADE_B1_SELECT");
  const bool lg = dyn && a.logits != nullptr && !(envLg && envLg[0] == '0') &&
                  !(envSel && std::strcmp(envSel, "grid") == 0);
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        if (lg) return launch_ws<T, D, GS, true, true>(s, a, out, st);
        if (dyn) return launch_ws<T, D, GS, true, false>(s, a, out, st);
        return launch_ws<T, D, GS, false, false>(s, a, out, st);
      });
    });
  });
}

}  // namespace kascade
