// The warp-specialised gather (KASCADE_VARIANT_GATHER_WS, cuda-b1, fifth session): sparse attention over
// the rows an index list names (reuse, and the anchors' sparse pass), built for batch 1, where 8 KV heads
// x 13107 selected rows (54 MB at 128k) must keep the whole GPU's DRAM busy.
//
// Kernel gather_ws_kernel<T, D, GS>
//   grid (splits, kvHeads, batch), block 160 threads = 4 consumer warps + 1 producer warp; one block =
//   one KV head j of one sequence b, all GS query heads of its group, list entries [split chunk,
//   (split + 1) chunk) (ws_splits: the rows' splits fill the CTAs resident at once, whole 16-key
//   groups each).
//   - Producer (warp 4): for each 64-entry stage of the block's range, reads the 64 indices (kept
//     kStages stages ahead in registers, so an index load's latency is paid once), waits until the
//     stage's ring slot is free (an `empty` mbarrier the 4 consumers arrive on), stores the positions,
//     and issues one 256-byte (D 128) cp.async.bulk per K row and per V row (4 per lane) completing on
//     the slot's `full` mbarrier (transaction bytes). A masked row (an out-of-range index, or the tail
//     of a 16-key group past the range) copies row 0 of the head (finite; its probability is 0); a
//     16-key group wholly past the range is neither copied nor computed.
//   - Consumers (warps 0..3): warp w takes keys 16 w .. 16 w + 15 of every stage: waits on `full`,
//     runs attend16 (S = Q K^T and O += P V with mma.sync, the online softmax in the log2 domain; the
//     same arithmetic as attn_partial_kernel's gathers), then arrives on `empty`.
//   Few instructions per byte in flight: the producer issues 4 copies per lane per 32 KB stage, where
//   the 16-byte cp.async gathers issue ~16 per lane per 8 KB warp step (session 4's ncu: ~660
//   instructions per warp step, the 128k batch-1 reuse latency-bound at ~45 % of DRAM bandwidth).
//   Shared memory at D 128: a 3-stage ring of 64 K and 64 V rows (padded to D + 8 elements), 105 KB:
//   two CTAs per SM, 6 stages (192 KB) in flight per SM. D 64: 6 stages.
//   End: the 4 consumers merge through shared memory (merge_warps), the block stores its partial
//   (m, l, o) in slot `split`, and the row's last block to finish merges the slots (merge_row_if_last,
//   its own counters g_ws_done). Beyond kMaxFusedRows rows (or slots whose weights would not fit in the
//   ring) the combine kernel merges instead.
//   Honoured variant bits: 32 (16-bit P). The other bits do not change this kernel.
#include <cstdlib>

#include "decode_attention.cuh"
#include "decode_device.cuh"

namespace kascade {

// Configurations (CFG; the default is 0, KASCADE_WS_CONFIG=1..4 picks another for tuning):
//   0: 4 consumers, 1 producer, 64-entry stages, 3 stages at D 128 (6 at D 64): ~105 KB, two CTAs per SM;
//   1: the same with 2 stages at D 128 (4 at D 64): ~70 KB, three CTAs per SM;
//   2: 4 consumers, 4 producers (producer w fills consumer w's 16 rows of each stage, its own full /
//      empty barriers), 3 stages at D 128: two CTAs per SM (at most 128 registers);
//   3: as 2 with 6 stages at D 128 (12 at D 64): ~209 KB, one CTA per SM;
//   4: as 2, the producers copying with 16-byte cp.async (a lane pair per row) that arrive on the stage's
//      `full` barrier as they complete (cp.async.mbarrier.arrive.noinc) instead of bulk copies.
template <int D, int CFG>
struct WsCfg {
  static constexpr int kConsumers = 4;
  static constexpr int kProducers = CFG >= 2 ? 4 : 1;
  static constexpr bool kCpAsync = CFG == 4;  // 16-byte cp.async producers (else one bulk copy per row)
  static constexpr int kThreads = 32 * (kConsumers + kProducers);
  static constexpr int kStageKeys = 16 * kConsumers;          // list entries per ring stage
  static constexpr int kProducerRows = kStageKeys / kProducers;  // rows (K and V each) one producer copies per stage
  static constexpr int kRow = D + 8;                          // padded row (elements): ldmatrix rows on distinct banks
  static constexpr int kStages = (CFG == 1 ? 2 : CFG == 3 ? 6 : 3) * (D == 128 ? 1 : 2);
  static constexpr int kMinBlocks = CFG == 1 ? 3 : CFG == 3 ? 1 : 2;
};

// Shared memory: the K ring [kStages][kStageKeys][kRow], the V ring likewise (the consumers' partials
// reuse it at the end), then the positions [kStages][kStageKeys] and the full / empty mbarriers.
template <typename T, int D, int GS, int CFG>
__host__ __device__ constexpr size_t ws_region_bytes() {
  using C = WsCfg<D, CFG>;
  const size_t ring = size_t(2) * C::kStages * C::kStageKeys * C::kRow * sizeof(T);
  const size_t red = sizeof(float) * (size_t(C::kConsumers) * GS * (D + 2));
  return ((ring > red ? ring : red) + 15) / 16 * 16;
}
template <typename T, int D, int GS, int CFG>
__host__ __device__ constexpr size_t ws_smem_bytes() {
  using C = WsCfg<D, CFG>;
  return ws_region_bytes<T, D, GS, CFG>() + size_t(C::kStages) * C::kStageKeys * sizeof(int) +
         size_t(2) * C::kStages * C::kProducers * sizeof(uint64_t);
}

// Completion counters of the fused merge: zero at module load, reset by the block that merges.
__device__ unsigned g_ws_done[kMaxFusedRows];

template <typename T, int D, int GS, int CFG>
__global__ void __launch_bounds__(WsCfg<D, CFG>::kThreads, WsCfg<D, CFG>::kMinBlocks)
    gather_ws_kernel(KascadeDecodeShape s, PartialArgs a, int fused) {
  using C = WsCfg<D, CFG>;
  constexpr int NS = C::kStages, SK = C::kStageKeys, R = C::kRow, NC = C::kConsumers, NP = C::kProducers;
  constexpr int PR = C::kProducerRows, GPP = NC / NP;  // a producer's rows and 16-row groups per stage
  constexpr int RLP = PR >= 32 ? PR / 32 : 1;           // index registers per lane and stage
  constexpr unsigned kRowBytes = D * sizeof(T);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + NS * SK * R;
  int* posS = reinterpret_cast<int*>(smem_raw + ws_region_bytes<T, D, GS, CFG>());
  // Barriers [stage][producer]: `full` completes when the producer's rows of the stage have landed,
  // `empty` when its GPP consumers have read them.
  uint64_t* full = reinterpret_cast<uint64_t*>(posS + NS * SK);
  uint64_t* empty = full + NS * NP;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    for (int i = 0; i < NS * NP; ++i) {
      mbar_init(full + i, C::kCpAsync ? 32 : 1);  // cp.async: every producer lane's copies arrive
      mbar_init(empty + i, GPP);
    }
  }
  mbar_fence_init();
  __syncthreads();

  const int split = blockIdx.x, j = blockIdx.y, b = blockIdx.z;
  const int G = s.kvHeads, n = s.n;
  const int begin = split * a.chunk, end = min(a.topk, begin + a.chunk);
  const int stages = end > begin ? (end - begin + SK - 1) / SK : 0;
  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t bh0 = static_cast<size_t>(b) * s.heads + static_cast<size_t>(j) * GS;

  float m = -INFINITY, l = 0.f;
  float acc[D / 8][2];
#pragma unroll
  for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] = acc[nb][1] = 0.f;

  if (warp >= NC) {
    // Producer pr: rows [pr PR, (pr + 1) PR) of every stage (groups pr GPP ...). Its lanes keep the raw
    // indices of the next NS stages in registers (q[u]: stage i with i % NS == u; the loop is unrolled by
    // NS so no register moves wait on a load); the range check happens when a stage is issued.
    const int pr = warp - NC;
    const int* idx = a.indices + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * a.topk;
    auto load_raw = [&](int i, int r) -> int {
      const int e = begin + i * SK + pr * PR + (lane + 32 * r) % PR;
      return (i < stages && e < end) ? __ldg(idx + e) : -1;
    };
    int q[NS][RLP];
#pragma unroll
    for (int u = 0; u < NS; ++u)
#pragma unroll
      for (int r = 0; r < RLP; ++r) q[u][r] = load_raw(u, r);
    for (int i0 = 0; i0 < stages; i0 += NS) {
#pragma unroll
      for (int u = 0; u < NS; ++u) {
        const int i = i0 + u;
        if (i >= stages) break;
        uint64_t* fb = full + u * NP + pr;
        if (i >= NS) mbar_wait(empty + u * NP + pr, static_cast<unsigned>(i / NS - 1) & 1u);
        int p[RLP];
#pragma unroll
        for (int r = 0; r < RLP; ++r) {
          const int raw = q[u][r];
          p[r] = (raw >= 0 && raw < n) ? raw : -1;  // an out-of-range index is masked, never read
          q[u][r] = load_raw(i + NS, r);
          if (lane + 32 * r < PR) posS[u * SK + pr * PR + lane + 32 * r] = p[r];
        }
        // 16-row groups with any entry in range are copied; this producer's first group is pr GPP.
        const int e0 = begin + i * SK + pr * PR;
        const int groups = max(0, min(GPP, (end - e0 + 15) / 16));
        __syncwarp();
        T* kd = Ks + (u * SK + pr * PR) * R;
        T* vd = Vs + (u * SK + pr * PR) * R;
        if constexpr (C::kCpAsync) {
          // Lane pair (2 r, 2 r + 1) copies row r (PR = 16), lane 2 r + h its 16-byte chunks 2 v + h of K and
          // V; a masked row reads 0 bytes (zero-filled). The lane's copies arrive on `full` as they land.
          static_assert(!C::kCpAsync || PR == 16, "cp.async producers copy 16 rows");
          const int row = lane >> 1, h = lane & 1;
          const int pp = __shfl_sync(0xffffffffu, p[0], row);
          const bool live = row / 16 < groups && pp >= 0;
          const size_t off = static_cast<size_t>(live ? pp : 0) * D + h * 8;
#pragma unroll
          for (int v = 0; v < D / 16; ++v) {
            cp_async16(kd + row * R + h * 8 + 16 * v, kg + off + 16 * v, live ? 16 : 0);
            cp_async16(vd + row * R + h * 8 + 16 * v, vg + off + 16 * v, live ? 16 : 0);
          }
          cp_async_mbar_arrive(fb);
          continue;
        }
        if (lane == 0) mbar_arrive_expect_tx(fb, static_cast<unsigned>(groups) * 16u * 2u * kRowBytes);
        // Copy c of this lane: flat = 32 c + lane over [K rows | V rows] of the producer's PR rows.
#pragma unroll
        for (int c = 0; c < 2 * PR / 32; ++c) {
          const int flat = 32 * c + lane, row = flat % PR;
          if (row / 16 < groups) {
            const int pp = p[row / 32 < RLP ? row / 32 : 0];
            const size_t off = static_cast<size_t>(pp < 0 ? 0 : pp) * D;
            if (flat < PR) {
              bulk_g2s(kd + row * R, kg + off, kRowBytes, fb);
            } else {
              bulk_g2s(vd + row * R, vg + off, kRowBytes, fb);
            }
          }
        }
      }
    }
  } else {
    // Consumers.
    uint32_t qa[D / 16][4];
    load_q_operand<T, D, GS>(static_cast<const T*>(a.q) + bh0 * D, qa);
    const float qscale = s.scale * kLog2e;
    const bool p16 = (a.variant & KASCADE_VARIANT_P16) != 0;
    const int pw = warp / GPP;  // the producer of this consumer's rows
    for (int i = 0; i < stages; ++i) {
      const int st = i % NS;
      mbar_wait(full + st * NP + pw, static_cast<unsigned>(i / NS) & 1u);
      __syncwarp();
      if (begin + i * SK + warp * 16 < end) {
        const int r0 = st * SK + warp * 16;
        attend16<T, D, R>(qa, Ks + r0 * R, Vs + r0 * R, posS + r0, qscale, p16, m, l, acc);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(empty + st * NP + pw);
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
  }
  __syncthreads();  // every copy has landed (the consumers waited on each stage): the ring is free

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
template <typename T, int D, int GS, int CFG>
static int ws_ctas_per_sm(cudaError_t* err) {
  static int perSm = 0;
  if (perSm == 0) {
    constexpr size_t smem = ws_smem_bytes<T, D, GS, CFG>();
    cudaError_t e = cudaFuncSetAttribute(gather_ws_kernel<T, D, GS, CFG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    int nb = 0;
    if (e == cudaSuccess)
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, gather_ws_kernel<T, D, GS, CFG>, WsCfg<D, CFG>::kThreads,
                                                        smem);
    if (e != cudaSuccess) {
      *err = e;
      return 0;
    }
    perSm = nb < 1 ? 1 : (nb > kLeanMaxCtasPerSm ? kLeanMaxCtasPerSm : nb);
  }
  return perSm;
}

template <typename T, int D, int GS, int CFG>
static cudaError_t launch_ws(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st) {
  cudaError_t e = cudaSuccess;
  const int perSm = ws_ctas_per_sm<T, D, GS, CFG>(&e);
  if (e != cudaSuccess) return e;
  a.splits = ws_splits(s, a.topk, perSm, &a.chunk);
  const bool fused = static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows &&
                     sizeof(float) * GS * static_cast<size_t>(a.splits) <= ws_region_bytes<T, D, GS, CFG>();
  gather_ws_kernel<T, D, GS, CFG><<<dim3(a.splits, s.kvHeads, s.batch), WsCfg<D, CFG>::kThreads,
                                    ws_smem_bytes<T, D, GS, CFG>(), st>>>(s, a, fused ? 1 : 0);
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
  // Tuning only: KASCADE_WS_CONFIG=1 to 4 runs another ring / warp configuration (WsCfg), read per call.
  const char* env = std::getenv("KASCADE_WS_CONFIG");
  const int cfg = env && env[0] >= '1' && env[0] <= '4' ? env[0] - '0' : 0;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        if (cfg == 1) return launch_ws<T, D, GS, 1>(s, a, out, st);
        if (cfg == 2) return launch_ws<T, D, GS, 2>(s, a, out, st);
        if (cfg == 3) return launch_ws<T, D, GS, 3>(s, a, out, st);
        if (cfg == 4) return launch_ws<T, D, GS, 4>(s, a, out, st);
        return launch_ws<T, D, GS, 0>(s, a, out, st);
      });
    });
  });
}

}  // namespace kascade
