// The anchor's sparse pass from the scores pass's f16 intermediate (KASCADE_VARIANT_SPARSE_U16, bit 524288, with
// bit 1024; cuda-anchor, session 7): the selected keys' scores come from u and m16 (select_plan.h) instead of
// their K rows, so the pass reads the V rows, GS u values and GS step maxima per selected key (at 128k batch 32:
// ~0.86 GB of V plus at most the 0.30 GB intermediate, where the K-row gather reads 1.72 GB).
//
// Kernel u16_sparse_kernel<T, D, GS>
//   grid (splits, kvHeads, batch), splits from u16_sparse_splits (the count whose blocks best fill whole waves of the
//   resident CTAs: 16 at 128k batch 32, 3 at 32k), block 128 threads = 4 warps, three CTAs per SM; warp w takes the
//   block's 16-entry groups w, w + 4, ... Per group, into the warp's own 3-stage ring, all by 16-byte cp.async: the 16
//   V rows, lane c % 32 copying the stage's chunk c (row c / (D / 8)), so that each instruction covers whole rows, and,
//   for lanes 0..15 (entry `lane`), the
//   4-byte word of u holding the key's value and the key's
//   step maximum m16, per query head (bit 1048576, the key-major intermediate: the key's GS values in one copy
//   of GS x 2 bytes, its GS step maxima in GS / 4 16-byte copies at GS >= 4). When the stage lands, lane e
//   turns its GS pairs into the log2-domain
//   score l = m16 + log2(u) - 15 (the value the scores pass rounded, within f16's 2^-11 relative rounding
//   of u, i.e. |dl| <= 2^-11 / ln 2 ~ 7e-4 in the log2 domain) and the warp runs the gathers' step
//   (attend16_logits: online softmax and P V on the tensor cores). A masked entry (an index out of range,
//   or past the list) copies nothing (zero-fill) and scores -inf.
//   A u of 0 (l more than ~39 octaves below its 16-key step's max: f16 underflow) scores -inf: such a key
//   weighs < 2^-39 of its step's max, which the K-row pass would also nearly ignore; only a head whose
//   selected keys ALL underflowed would differ (its output 0 / 0), which needs every selected key 2^39
//   below an unselected neighbour for that head.
//   End: the 4 warps merge (merge_warps), the block stores its partial, and with bit 4 the row's last block
//   merges the splits (its own counters), else the combine kernel runs.
//   Bit 134217728 (cuda-anchor, session 10; a.early = the stream select's state rows): launched programmatic-dependent
//   on the stream select, which releases it after its phase 3; an index entry is read (through L2) only once the row's
//   ready count (state word kB1ReadyInt: entries written + 1, st.release by the select) covers it (ld.acquire), so the
//   pass runs beside the select's phase 4 (call B, 128k batch 32: anchor 2738.3 against 2748.6 us).
//   (Session 11, call B: the selected keys' scores written by the stream select beside their indices and copied here in
//   list order, no u / m16 reads: this pass 348-352 us for 926 MB against 392-394 us for 1083 MB, but the select took
//   ~85 us more to write them; the anchor lost, 2733.2 against 2691.7 us at 128k batch 32, and it was removed. The V
//   rows alone run at ~2.6 TB/s.)
//   Session 12 (cuda-anchor): until then a lane pair per V row (each instruction one 32-byte sector of each of 16
//   rows), 4 stages, two CTAs per SM and attn_splits' 4 splits: 391-394 us under ncu at 128k batch 32, against 299 us
//   now (call B; packages/cuda/README.md, "Twelfth session", also for the TMA bulk copies per row that lost, 326 us).
// Shared memory per block at D 128: 4 warps x 3 stages x (16 x 136 x 2 B + 16 x GS x 8 B): 57 KB at GS 4.
#include <algorithm>

#include "decode_attention.cuh"
#include "decode_device.cuh"

namespace kascade {

// Ring stages per warp, and the CTAs per SM they leave room for (57 KB per CTA at D 128, GS 4). (Session 8, call B: 5
// stages at two CTAs per SM, 384-386 us against 388-389 at 128k batch 32. Session 12, call A, with session 11's copies:
// 3 stages at three CTAs 388-391 us, 2 stages at four 379-382 us; call B, with the whole-row copies: 3 stages 299 us, 4
// stages at session 11's splits 361-364 us.)
constexpr int kU16SparseStages = 3;
constexpr int kU16SparseCtasPerSm = 3;
constexpr int kU16SparseWarps = 4;

// One ring stage: 16 padded V rows, then per entry GS u words and GS step maxima (turned into scores in place).
template <typename T, int D, int GS>
__host__ __device__ constexpr size_t u16_sparse_stage_bytes() {
  return size_t(16) * (D + 8) * sizeof(T) + size_t(16) * GS * 8;
}
template <typename T, int D, int GS>
__host__ __device__ constexpr size_t u16_sparse_smem_bytes() {
  return size_t(kU16SparseWarps) * kU16SparseStages * u16_sparse_stage_bytes<T, D, GS>();
}
// merge_warps's red_o / red_ml reuse the ring.
static_assert(u16_sparse_smem_bytes<__half, 64, 8>() >= sizeof(float) * kU16SparseWarps * 8 * (64 + 2),
              "the warps' merge fits the ring");
static_assert(u16_sparse_smem_bytes<__half, 128, 8>() * kU16SparseCtasPerSm <= 227 * 1024,
              "the ring leaves room for kU16SparseCtasPerSm CTAs per SM");

// A 4-byte cp.async that zero-fills when src_bytes is 0.
__device__ __forceinline__ void cp_async4_zfill(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
}

// An 8-byte cp.async that zero-fills when src_bytes is 0.
__device__ __forceinline__ void cp_async8_zfill(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
}

// Completion counters of the fused merge (bit 4): zero at module load, reset by the block that merges.
__device__ unsigned g_u16_sparse_done[kMaxFusedRows];

template <typename T, int D, int GS>
__global__ void __launch_bounds__(32 * kU16SparseWarps, kU16SparseCtasPerSm)
    u16_sparse_kernel(KascadeDecodeShape s, PartialArgs a, const __half* __restrict__ u, const float* __restrict__ m16,
                      int fused) {
  constexpr int NS = kU16SparseStages, R = D + 8;
  constexpr size_t SB = u16_sparse_stage_bytes<T, D, GS>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int posS[kU16SparseWarps][NS][16];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int split = blockIdx.x, j = blockIdx.y, b = blockIdx.z;
  const int G = s.kvHeads, n = s.n, nU = u16_stride(n);
  const int layout = u16_layout_of(s.variant, GS);  // bit 1048576 (both orders the same at GS 1)
  const bool keyMajor = layout != kU16HeadMajor;
  const int begin = split * a.chunk, end = min(a.topk, begin + a.chunk);
  const size_t bh0 = static_cast<size_t>(b) * s.heads + static_cast<size_t>(j) * GS;
  const T* vg = static_cast<const T*>(a.v) + (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const int* idx = a.indices + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * a.topk;
  unsigned char* ring = smem_raw + static_cast<size_t>(warp) * NS * SB;
  auto stage_v = [&](int st) { return reinterpret_cast<T*>(ring + st * SB); };
  auto stage_u = [&](int st) { return reinterpret_cast<unsigned*>(ring + st * SB + size_t(16) * R * sizeof(T)); };
  auto stage_lg = [&](int st) { return reinterpret_cast<float*>(stage_u(st) + 16 * GS); };

  const int groups = end > begin ? (end - begin + 15) / 16 : 0;
  const int steps = groups > warp ? (groups - warp + kU16SparseWarps - 1) / kU16SparseWarps : 0;
  // Bit 134217728 (a.early: the stream select's state rows): this pass runs beside the select's phase 4, which
  // publishes the row's ready count (entries written + 1, st.release) at word kB1ReadyInt; an entry not yet covered is
  // kPending until its copies are issued, then waited for (acquire loads) and read through L2.
  const int* readyWord = a.early ? a.early + (static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * kStateInts + kB1ReadyInt
                                 : nullptr;
  constexpr int kPending = -2;
  int ready = 0;  // entries this lane knows written
  auto poll_ready = [&]() {
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(readyWord) : "memory");
    ready = max(ready, v - 1);
  };
  // Entry `lane` (< 16) of step i: its raw index, read NS steps before its copies are issued.
  auto raw_pos = [&](int i) -> int {
    const int e = begin + (warp + kU16SparseWarps * i) * 16 + lane;
    if (!(lane < 16 && i < steps && e < end)) return -1;
    if (!readyWord) return __ldg(idx + e);
    if (e >= ready) {
      poll_ready();
      if (e >= ready) return kPending;
    }
    return __ldcg(idx + e);
  };
  // pq: the raw indices of the next NS steps; pq[0] is the next step's, shifted down at each issue. (Session 12, call A:
  // the slots as fixed registers of a loop unrolled by NS, so that each index load had NS steps to land instead of
  // one, changed nothing: 391 against 389 us at three CTAs per SM, 426-432 against 431-433 at two; removed.)
  int pq[NS];
#pragma unroll
  for (int t = 0; t < NS; ++t) pq[t] = raw_pos(t);
  // Step i's copies into stage st from its raw index `raw` (taken from its pq slot).
  auto issue_raw = [&](int i, int st, int raw) {
    if (i < steps) {
      if (raw == kPending) {  // bit 134217728: wait until the select has written this entry
        const int e = begin + (warp + kU16SparseWarps * i) * 16 + lane;
        for (poll_ready(); e >= ready; poll_ready()) __nanosleep(256);
        raw = __ldcg(idx + e);
      }
      const int p = (raw >= 0 && raw < n) ? raw : -1;  // out of range: masked, never read
      if (lane < 16) {
        posS[warp][st][lane] = p;
        const int pc = p < 0 ? 0 : p, bytes = p < 0 ? 0 : 4;
        unsigned* uw = stage_u(st) + lane * GS;
        float* mw = stage_lg(st) + lane * GS;
        if (keyMajor) {
          // Key-major: the key's GS values side by side (GS x 2 bytes, aligned to that): one copy.
          const __half* us = u + u16_index(bh0, 0, pc, nU, GS, layout);
          if constexpr (GS == 2) cp_async4_zfill(uw, us, bytes);
          if constexpr (GS == 4) cp_async8_zfill(uw, us, bytes * 2);
          if constexpr (GS == 8) cp_async16(uw, us, bytes * 4);
        } else {
#pragma unroll
          for (int h = 0; h < GS; ++h) cp_async4_zfill(uw + h, u + u16_index(bh0, h, pc & ~1, nU, GS, false), bytes);
        }
        if (GS >= 4 && keyMajor) {
          // Key-major: the key's GS step maxima are adjacent (16-byte aligned at GS >= 4): GS / 4 16-byte copies.
          const float* ms = m16 + u16_m16_index(bh0, 0, pc, nU, GS, layout);
#pragma unroll
          for (int q = 0; q < GS / 4; ++q) cp_async16(mw + 4 * q, ms + 4 * q, bytes * 4);
        } else {
#pragma unroll
          for (int h = 0; h < GS; ++h) cp_async4_zfill(mw + h, m16 + u16_m16_index(bh0, h, pc, nU, GS, layout), bytes);
        }
      }
      // 16-byte chunk c of the stage (row c / (D / 8), chunk c % (D / 8)) by lane c % 32, so one instruction covers
      // 32 / (D / 8) whole rows (whole 128-byte lines), as the K-row gather's copies do.
      constexpr int CPR = D / 8;
#pragma unroll
      for (int c = lane; c < 16 * CPR; c += 32) {
        const int r = c / CPR, col = (c % CPR) * 8;
        const int pr = __shfl_sync(0xffffffffu, p, r);
        cp_async16(stage_v(st) + r * R + col, vg + static_cast<size_t>(pr < 0 ? 0 : pr) * D + col, pr < 0 ? 0 : 16);
      }
    }
    cp_async_commit();
  };
  // Step i's index is pq[0]; the slots shift down and the last takes step i + NS's.
  auto issue = [&](int i) {
    int raw = -1;
    if (i < steps) {
      raw = pq[0];
#pragma unroll
      for (int t = 0; t + 1 < NS; ++t) pq[t] = pq[t + 1];
      pq[NS - 1] = raw_pos(i + NS);
    }
    issue_raw(i, i % NS, raw);
  };

  float m = -INFINITY, l = 0.f;
  float acc[D / 8][2];
#pragma unroll
  for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] = acc[nb][1] = 0.f;
  const bool p16 = (a.variant & KASCADE_VARIANT_P16) != 0;
  // Step i's stage once its copies have landed: the scores from u and m16, then the softmax and P V.
  auto consume = [&](int i, int st) {
    cp_async_wait<NS - 1>();
    __syncwarp();
    if (lane < 16) {
      const int p = posS[warp][st][lane];
      const unsigned* uw = stage_u(st) + lane * GS;
      float* lg = stage_lg(st) + lane * GS;
#pragma unroll
      for (int h = 0; h < GS; ++h) {
        const unsigned w = uw[h];
        const unsigned short bits = keyMajor ? reinterpret_cast<const unsigned short*>(uw)[h]
                                             : static_cast<unsigned short>((p & 1) ? (w >> 16) : (w & 0xffffu));
        const float uf = __half2float(__ushort_as_half(bits));
        lg[h] = uf > 0.f ? lg[h] + __log2f(uf) - kU16ScaleLog2 : -INFINITY;
      }
    }
    __syncwarp();
    attend16_logits<T, D, GS, R>(stage_lg(st), stage_v(st), posS[warp][st], p16, m, l, acc);
    __syncwarp();
  };
#pragma unroll
  for (int t = 0; t < NS - 1; ++t) issue(t);
  for (int i = 0; i < steps; ++i) {
    issue(i + NS - 1);
    consume(i, i % NS);
  }
  cp_async_wait<0>();
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  __syncthreads();  // every warp is done with its ring: the merge reuses it

  store_split_and_merge<T, D, GS, kU16SparseWarps, 32 * kU16SparseWarps>(
      reinterpret_cast<float*>(smem_raw), m, l, acc, a.part_o, a.part_ml, a.splits, split, bh0, static_cast<T*>(a.out),
      fused ? g_u16_sparse_done + (static_cast<size_t>(b) * G + j) : nullptr, false);
}

// Splits per (sequence, KV head) row so that the rows' blocks fill whole waves of the `slots` resident CTAs: the count
// in 1..maxSplits whose blocks leave the least idle share of their last wave (the smallest such), then whole kTile-entry
// chunks per split (at 128k batch 32 on 132 SMs: 17 splits, which the rounding makes 16 of 832 entries; at 32k, 3);
// writes the entries per split to *chunk and returns the split count. (Session 12, call B, with TMA bulk copies per V
// row under ncu: 16 splits 326 us, 3 splits 313, attn_splits' 4 339; with the whole-row copies only 16 was measured.)
static int u16_sparse_splits(long long rows, int topk, long long slots, int maxSplits, int* chunk) {
  const int most = std::max(1, std::min(maxSplits, ceil_div(topk, kMinKeysPerSplit)));
  int best = 1;
  double bestEff = -1.0;
  for (int S = 1; S <= most; ++S) {
    const long long blocks = rows * S, waves = (blocks + slots - 1) / slots;
    const double eff = static_cast<double>(blocks) / static_cast<double>(waves * slots);
    if (eff > bestEff + 1e-9) {
      bestEff = eff;
      best = S;
    }
  }
  const int c = ceil_div(ceil_div(topk, best), kTile) * kTile;
  *chunk = c;
  return ceil_div(topk, c);
}

cudaError_t launch_u16_sparse(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  a.out = out;
  a.variant = s.variant;
  a.splits = attn_splits(s, a.topk, &a.chunk, true);
  if (s.splits <= 0) {
    // The workspace holds attn_splits' counts of the context and of the list (workspace_layout): stay within them.
    int c;
    const int room = std::max(attn_splits(s, s.n, &c, false), a.splits);
    a.splits = u16_sparse_splits(static_cast<long long>(s.batch) * s.kvHeads, a.topk,
                                 static_cast<long long>(device_sm_count()) * kU16SparseCtasPerSm, room, &a.chunk);
  }
  const __half* u = static_cast<const __half*>(static_cast<const void*>(a.logits));
  const float* m16 = u16_m16(a.logits, static_cast<size_t>(s.batch) * s.heads, s.n);
  const bool fused = (s.variant & KASCADE_VARIANT_FUSED) && static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows &&
                     fused_combine_fits(s, a.splits);
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        constexpr size_t smem = u16_sparse_smem_bytes<T, D, GS>();
        static const cudaError_t attr = cudaFuncSetAttribute(
            u16_sparse_kernel<T, D, GS>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (attr != cudaSuccess) return attr;
        // Bit 134217728 (a.early set): launched programmatic-dependent on the stream select, which releases it after
        // its phase 3; it never waits for the select's end (the ready counts order its reads of the list).
        cudaError_t e = launch_maybe_pdl(a.early != nullptr, u16_sparse_kernel<T, D, GS>,
                                         dim3(a.splits, s.kvHeads, s.batch), dim3(32 * kU16SparseWarps), smem, st, s, a,
                                         u, m16, fused ? 1 : 0);
        if (e != cudaSuccess || fused) return e;
        return launch_combine(s, a.splits, a.part_o, a.part_ml, out, st);
      });
    });
  });
}

}  // namespace kascade
