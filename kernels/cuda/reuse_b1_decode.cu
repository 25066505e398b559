// The warp-specialised gather (KASCADE_VARIANT_GATHER_WS, cuda-b1, fifth session): sparse attention over
// the rows an index list names (reuse, and the anchors' sparse pass), built for batch 1, where 8 KV heads
// x 13107 selected rows (54 MB at 128k) must keep the whole GPU's DRAM busy.
//
// Kernel gather_ws_kernel<T, D, GS, CFG>
//   grid (splits, kvHeads, batch), block 256 threads = 4 consumer warps + 4 producer warps; one block =
//   one KV head j of one sequence b, all GS query heads of its group, list entries [split chunk,
//   (split + 1) chunk) (ws_splits: the rows' splits fill the CTAs resident at once, whole 16-key
//   groups each). The block's range is cut into 64-entry stages of a shared ring; consumer w and
//   producer w own entries 16 w .. 16 w + 15 of every stage, with a `full` and an `empty` mbarrier
//   per stage and pair.
//   - Producer w (warp 4 + w): reads its 16 indices of the next kStages stages ahead into registers,
//     waits until the stage's slot is free (`empty`), stores the positions, and issues one 256-byte
//     (D 128) cp.async.bulk per K row (lanes 0-15) and per V row (lanes 16-31), completing on `full`
//     by transaction bytes. A masked row (an out-of-range index, or past the range inside a live
//     16-entry group) copies row 0 of the head (finite; its probability is 0); a group wholly past
//     the range is neither copied nor computed.
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

#include "decode_attention.cuh"
#include "decode_device.cuh"

namespace kascade {

// Configurations (CFG): 4 consumer warps and 4 producer warps (producer w fills consumer w's 16 rows of
// each stage, with its own full / empty barriers per stage);
//   0 (the default): 3 stages at D 128 (6 at D 64), ~105 KB: two CTAs per SM (at most 128 registers);
//   1 (KASCADE_WS_CONFIG=1, tuning): 6 stages at D 128 (12 at D 64), ~209 KB: one CTA per SM.
// Call B (session 5, H200, 128k batch 1, event-timed reuse): 0: 23.2 us, 1: 25.6 us; one producer warp
// per block with bulk copies (two or three CTAs per SM): 37.1 / 30.6 us; four producers with 16-byte
// cp.async arriving on the stage barrier: 31.8 us. At 8k, 1 was fastest (9.6 against 10.5 us).
template <int D, int CFG>
struct WsCfg {
  static constexpr int kConsumers = 4;
  static constexpr int kProducers = 4;
  static constexpr int kThreads = 32 * (kConsumers + kProducers);
  static constexpr int kStageKeys = 16 * kConsumers;  // list entries per ring stage
  static constexpr int kRow = D + 8;                  // padded row (elements): ldmatrix rows on distinct banks
  static constexpr int kStages = (CFG == 1 ? 6 : 3) * (D == 128 ? 1 : 2);
  static constexpr int kMinBlocks = CFG == 1 ? 1 : 2;
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
  constexpr unsigned kRowBytes = D * sizeof(T);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + NS * SK * R;
  int* posS = reinterpret_cast<int*>(smem_raw + ws_region_bytes<T, D, GS, CFG>());
  // Barriers [stage][producer]: `full` completes when the producer's 16 rows of the stage have landed,
  // `empty` when its consumer has read them.
  uint64_t* full = reinterpret_cast<uint64_t*>(posS + NS * SK);
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
    // Producer pr: rows [16 pr, 16 pr + 16) of every stage, lane l the K row (l < 16) or the V row (l >= 16)
    // l % 16. Its lanes keep the raw indices of the next NS stages in registers (q[u]: stage i with
    // i % NS == u; the loop is unrolled by NS so no register move waits on a load); the range check
    // happens when a stage is issued.
    const int pr = warp - NC, row = lane & 15;
    const int* idx = a.indices + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * a.topk;
    auto load_raw = [&](int i) -> int {
      const int e = begin + i * SK + pr * 16 + row;
      return (i < stages && e < end) ? __ldg(idx + e) : -1;
    };
    int q[NS];
#pragma unroll
    for (int u = 0; u < NS; ++u) q[u] = load_raw(u);
    for (int i0 = 0; i0 < stages; i0 += NS) {
#pragma unroll
      for (int u = 0; u < NS; ++u) {
        const int i = i0 + u;
        if (i >= stages) break;
        uint64_t* fb = full + u * NP + pr;
        if (i >= NS) mbar_wait(empty + u * NP + pr, static_cast<unsigned>(i / NS - 1) & 1u);
        const int raw = q[u];
        const int p = (raw >= 0 && raw < n) ? raw : -1;  // an out-of-range index is masked, never read
        q[u] = load_raw(i + NS);
        if (lane < 16) posS[u * SK + pr * 16 + row] = p;
        // The group is copied if any of its entries is in range (a masked row copies row 0: finite,
        // probability 0); a group wholly past the range is neither copied nor computed.
        const bool live = begin + i * SK + pr * 16 < end;
        __syncwarp();
        if (lane == 0) mbar_arrive_expect_tx(fb, live ? 16u * 2u * kRowBytes : 0u);
        if (live) {
          const size_t off = static_cast<size_t>(p < 0 ? 0 : p) * D;
          const int r0 = (u * SK + pr * 16 + row) * R;
          if (lane < 16) {
            bulk_g2s(Ks + r0, kg + off, kRowBytes, fb);
          } else {
            bulk_g2s(Vs + r0, vg + off, kRowBytes, fb);
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
    const int pw = warp;  // the producer of this consumer's rows
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
  // Tuning only: KASCADE_WS_CONFIG=1 runs the one-CTA-per-SM ring (WsCfg), read per call.
  const char* env = std::getenv("KASCADE_WS_CONFIG");
  const int cfg = env && env[0] == '1' ? 1 : 0;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        if (cfg == 1) return launch_ws<T, D, GS, 1>(s, a, out, st);
        return launch_ws<T, D, GS, 0>(s, a, out, st);
      });
    });
  });
}

}  // namespace kascade
