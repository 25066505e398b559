// The warp-specialised gather (KASCADE_VARIANT_GATHER_WS, cuda-b1, fifth session): sparse attention over
// the rows an index list names (reuse, and the anchors' sparse pass), built for batch 1, where 8 KV heads
// x 13107 selected rows (54 MB at 128k) must keep the whole GPU's DRAM busy.
//
// Kernel gather_ws_kernel<T, D, GS, LG>
//   grid (splits, kvHeads, batch), block 256 threads = 4 consumer warps + 4 producer warps; one block =
//   one KV head j of one sequence b, all GS query heads of its group (ws_splits: the rows' splits fill
//   the CTAs resident at once). Each stage of a shared ring holds 64 entries; consumer w and producer w
//   own entries 16 w .. 16 w + 15 of every stage (one 16-entry group), with a `full` and an `empty`
//   mbarrier per stage and pair; the block's range [split chunk, (split + 1) chunk) is cut into stages.
//   - Producer w (warp 4 + w): reads its 16 indices of the next kStages stages ahead into registers,
//     waits until the stage's slot is free (`empty`), stores the positions, and issues one 256-byte
//     (D 128) cp.async.bulk per K row (lanes 0-15) and per V row (lanes 16-31), completing on `full`
//     by transaction bytes. A masked row (an out-of-range index, or past the range inside a live
//     16-entry group) copies row 0 of the head (finite; its probability is 0); a group wholly past
//     the range is neither copied nor computed.
//   - LG (the anchors' sparse pass after the b1 select, which leaves the scores pass's f32 logits
//     intact): lanes 0-15 copy their entry's GS logits instead (4-byte cp.async, tracked by `full`
//     through cp.async.mbarrier.arrive), only V rows are copied, and the consumers take the scores
//     from the logits (attend16_logits): ~35 MB read instead of ~54 at 128k batch 1.
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
//   Honoured variant bits: 32 (16-bit P), 4096 (programmatic dependent launch; session 7), 65536 (below),
//   64 (session 8, head dim 128): 8 consumer + 8 producer warps in one CTA per SM (W): half the splits per row, and
//   the row's last CTA merges them in one L2 round trip with twice the threads (ws_merge_slots).
//   (Session 8, call A: bit 64 first made each row's CTAs one thread block cluster merging through distributed shared
//   memory; this H200 holds only 7 clusters of 10-16 CTAs at one CTA per SM (9 of 9, 15 of 8), so 8 rows ran as
//   9-CTA clusters on 72 SMs: reuse 25.25 against 22.46 us at 128k batch 1 (call B: 25.41 against the wide CTAs'
//   21.73); removed.)
//   33554432 (session 10; the anchor's sparse pass after the b1 select, K rows, W; template flag E): the early sparse
//   pass. The grid starts after the select's barrier 2 (programmatic dependent launch) and reads the index list as the
//   select's per-row ready count allows (a.early: state word kB1ReadyInt, ld.acquire; an entry past it is loaded at its
//   stage's issue after polling), not after the select's grid; each split takes the row's 16-entry groups split,
//   split + splits, ... (b1_early.cuh), so the groups phase 3 writes last come last in every split; the splits fill the
//   SMs the select's phase-3 CTAs leave free; griddepcontrol.wait only at the end.
//   (Session 10, lost and removed: tuning knobs KASCADE_WS_WARM, the slots' merge run dry first, once per CTA at its
//   start through a noinline copy (call A: reuse 23.62 against 21.63 us at 128k batch 1) and then by every CTA after
//   its arrival (call B: 21.41 against 21.63, the last CTA's merge unchanged at 1.7 us), and KASCADE_WS_STEAL=15, each
//   row's last 15 % of groups claimed one group at a time from a per-row counter (call A: 23.78 against 21.63).)
//   536870912 (session 11, W with 4194304): the split merge through each row's f64 accumulator (ws_store_and_accumulate,
//   ws_finish_acc): the row's last CTA loads GS x (D + 1) sums instead of its slots. Session 12: its warps' merge loads
//   every warp's state first and sums by trees with one ex2.approx per warp (call B at 128k batch 1: reuse 20.26 against
//   session 11's loop's 20.83 us, b1 probe). (Session 12, lost and removed, tuning knobs: call A's KASCADE_WS_TICKET,
//   KASCADE_WS_EVICT_FIRST and KASCADE_WS_WARM_TAIL, call B's KASCADE_WS_ACC32; packages/cuda/README.md, batch 1,
//   twelfth session.)
//   The other bits do not change this kernel.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "b1_early.cuh"
#include "decode_attention.cuh"
#include "decode_device.cuh"

namespace kascade {

// The layout: 4 consumer warps and 4 producer warps (producer w fills consumer w's 16 rows of each stage,
// with its own full / empty barriers per stage); 3 stages at D 128 (6 at D 64), ~105 KB: two CTAs per SM
// (at most 128 registers). Call B of session 5 (H200, 128k batch 1, event-timed reuse): 23.2 us; 6 stages
// and one CTA per SM 25.6 us (removed in session 6); one producer warp per block with bulk copies (two or
// three CTAs per SM): 37.1 / 30.6 us; four producers with 16-byte cp.async arriving on the stage barrier:
// 31.8 us.
// Session 6, call A (128k batch 1, event-timed reuse): taking 16-entry groups from a per-row counter instead
// of fixed ranges (against the SMs' uneven finish) ran 27.4 us against 22.6 (8k: 14.9 against 10.3); removed.

// W (KASCADE_VARIANT_WS_WIDE, session 8): twice the warps and the ring in one CTA per SM (the same rows in flight per
// SM): half the splits per row, so the row's last CTA merges half the slots, with twice the threads.
template <int D, bool W = false>
struct WsCfg {
  static constexpr int kConsumers = W ? 8 : 4;
  static constexpr int kProducers = kConsumers;
  static constexpr int kThreads = 32 * (kConsumers + kProducers);
  static constexpr int kStageKeys = 16 * kConsumers;  // list entries per ring stage
  static constexpr int kRow = D + 8;                  // padded row (elements): ldmatrix rows on distinct banks
  static constexpr int kStages = D == 128 ? 3 : 6;
  static constexpr int kMinBlocks = W ? 1 : 2;
};

// Shared memory: the K ring [kStages][kStageKeys][kRow], the V ring likewise (the consumers' partials
// reuse it at the end), then the positions [kStages][kStageKeys] and the full / empty mbarriers.
template <typename T, int D, int GS, bool W = false>
__host__ __device__ constexpr size_t ws_region_bytes() {
  using C = WsCfg<D, W>;
  const size_t ring = size_t(2) * C::kStages * C::kStageKeys * C::kRow * sizeof(T);
  const size_t red = sizeof(float) * (size_t(C::kConsumers) * GS * (D + 2));
  return ((ring > red ? ring : red) + 15) / 16 * 16;
}
template <typename T, int D, int GS, bool W = false>
__host__ __device__ constexpr size_t ws_smem_bytes() {
  using C = WsCfg<D, W>;
  return ws_region_bytes<T, D, GS, W>() + size_t(C::kStages) * C::kStageKeys * sizeof(int) +
         size_t(2) * C::kStages * C::kProducers * sizeof(uint64_t);
}

// Completion counters of the fused merge: zero at module load, reset by the block that merges.
__device__ unsigned g_ws_done[kMaxFusedRows];

// Tuning knob KASCADE_WS_TRACE=1 (session 7): each CTA (up to kWsTraceCtas) records globaltimer at its start, when
// its first stage has landed, when its loop ends and at its exit (after the fused merge, for the row's last CTA),
// and its SM; the host prints a summary of the launch after it (where the kernel's time goes: start spread, the
// first rows' latency, the loop's spread over CTAs, the merge). Session 9, W gather: also when its partial's stores are
// issued (5) and, in the row's last CTA, when its arrival has told it so (6): the last exit's epilogue in three steps.
// Session 11: (7) in the row's last CTA, when thread 0's slot loads of the merge have landed (a branch on their values
// orders the mark after them): the slots' merge as its L2 round trip and the rest.
// Session 12 (bit 536870912): (8) when the warps' states are in shared memory (after the merge's first barrier) and (9)
// when thread 0's merged element is computed, before its slot store and f64 adds: the warps' merge in three steps.
constexpr int kWsTraceCtas = 4096;
constexpr int kWsTraceCols = 10;
__device__ unsigned long long g_ws_trace[kWsTraceCtas][kWsTraceCols];
// Entry k of this CTA's trace row: globaltimer (k != 4) or the SM id (k = 4); no register held between marks.
__device__ __noinline__ void ws_mark(int k) {
  const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (cta >= static_cast<unsigned>(kWsTraceCtas)) return;
  unsigned long long t;
  if (k != 4) {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } else {
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    t = sm;
  }
  g_ws_trace[cta][k] = t;
}

// KASCADE_VARIANT_WS_REGS (session 7): at two CTAs per SM a thread may hold 128 registers, and the D 128
// consumers (Q's operand, the accumulators, a step's fragments) spilled 40 bytes per thread (ptxas; ncu at 128k
// batch 1: 76k local-memory requests per launch). With RG the producers' warpgroup gives registers back
// (setmaxnreg.dec to kWsProducerRegs) and the consumers' warpgroup takes them (setmaxnreg.inc to kWsConsumerRegs):
// within the CTA's 256 x R registers when ptxas gives the kernel R >= kWsRegsNeeded (128 at present; checked at
// launch, else the kernel without the split runs: a setmaxnreg.inc beyond the pool would wait for ever).
constexpr int kWsProducerRegs = 40;
constexpr int kWsConsumerRegs = 208;
constexpr int kWsRegsNeeded = (kWsProducerRegs + kWsConsumerRegs) / 2;  // 124

// The row's last CTA's merge of the W gather (session 8): every thread issues its share of the slots' (m, l) AND o
// loads at once (one L2 round trip, where merge_row_if_last reads (m, l), then o), merging online: kTpo threads per
// output float4, each over slots sub, sub + kTpo, ..., then combined across the kTpo lanes by shuffles.
template <typename T, int D, int GS, int NT>
__device__ __forceinline__ void ws_merge_slots(const float* part_o, const float* part_ml, int S, size_t bh0, T* out,
                                               bool marks = false) {
  constexpr int kOut4 = GS * D / 4;  // the row's output float4s
  constexpr int kTpo = NT / kOut4;   // threads per output float4
  static_assert(kTpo >= 1 && kTpo <= 32 && (kTpo & (kTpo - 1)) == 0, "threads per output: a power of two <= 32");
  constexpr int kPer = 8;  // slots per thread per round
  const int tid = static_cast<int>(threadIdx.x), o4 = tid / kTpo, sub = tid % kTpo;
  const int h = o4 / (D / 4), d = (o4 % (D / 4)) * 4;
  const float* ml = part_ml + (bh0 + h) * S * 2;
  const float* po = part_o + (bh0 + h) * S * D + d;
  float M = -INFINITY, L = 0.f;
  float4 O = make_float4(0.f, 0.f, 0.f, 0.f);
  auto fold = [](float4& o, float c, const float4& t, float w) {
    o.x = fmaf(t.x, w, o.x * c);
    o.y = fmaf(t.y, w, o.y * c);
    o.z = fmaf(t.z, w, o.z * c);
    o.w = fmaf(t.w, w, o.w * c);
  };
  for (int x0 = 0; x0 < S; x0 += kTpo * kPer) {
    float mm[kPer], ll[kPer];
    float4 oo[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int x = x0 + sub + kTpo * u;
      const bool ok = x < S;
      mm[u] = ok ? __ldcg(ml + 2 * x) : -INFINITY;
      ll[u] = ok ? __ldcg(ml + 2 * x + 1) : 0.f;
      oo[u] = ok ? __ldcg(reinterpret_cast<const float4*>(po + static_cast<size_t>(x) * D)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float Mr = M;
#pragma unroll
    for (int u = 0; u < kPer; ++u) Mr = fmaxf(Mr, mm[u]);
    if (marks && tid == 0 && x0 == 0) {  // trace mark 7: thread 0's loads have landed (the branch waits for them)
      const float chk = Mr + ll[0] + oo[0].x + oo[kPer - 1].w;
      if (__float_as_uint(chk) != 0x7fbadbadu) ws_mark(7);
    }
    if (Mr == -INFINITY) continue;  // every slot so far empty
    const float c = M == -INFINITY ? 0.f : exp2f(M - Mr);
    L *= c;
    fold(O, c, O, 0.f);
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const float w = mm[u] == -INFINITY ? 0.f : exp2f(mm[u] - Mr);
      L = fmaf(ll[u], w, L);
      fold(O, 1.f, oo[u], w);
    }
    M = Mr;
  }
#pragma unroll
  for (int off = 1; off < kTpo; off <<= 1) {
    const float Mo = __shfl_xor_sync(0xffffffffu, M, off), Lo = __shfl_xor_sync(0xffffffffu, L, off);
    const float4 Oo = make_float4(__shfl_xor_sync(0xffffffffu, O.x, off), __shfl_xor_sync(0xffffffffu, O.y, off),
                                  __shfl_xor_sync(0xffffffffu, O.z, off), __shfl_xor_sync(0xffffffffu, O.w, off));
    const float Mn = fmaxf(M, Mo);
    if (Mn == -INFINITY) continue;
    const float ca = M == -INFINITY ? 0.f : exp2f(M - Mn), cb = Mo == -INFINITY ? 0.f : exp2f(Mo - Mn);
    L = L * ca + Lo * cb;
    fold(O, ca, Oo, cb);
    M = Mn;
  }
  if (sub == 0) {
    T* op = out + (bh0 + h) * D + d;
    op[0] = from_float<T>(O.x / L);
    op[1] = from_float<T>(O.y / L);
    op[2] = from_float<T>(O.z / L);
    op[3] = from_float<T>(O.w / L);
  }
}

// KASCADE_VARIANT_WS_EPILOGUE (session 9, W): the warps' merge with rows kWsMergePad floats longer (merge_warps: call
// B's ws trace put the last CTA's warp merge and stores at 1.02 us, 4-way bank conflicts on 32 scalar stores per lane),
// and the row's arrival counter as CUTLASS's generic barrier and cooperative
// groups' grid sync take it: the CTA's barrier, then one thread's acq_rel atomic (its release covers the CTA's partial
// stores ordered before it by the barrier; its acquire, passed on by the barrier after it, the other slots' loads),
// instead of row_last_block's fence.sc by every thread before a relaxed atomic and again after it. True in every thread
// of the row's last CTA (which resets the counter for the next launch).
constexpr int kWsMergePad = 8;
__device__ __forceinline__ bool row_last_block_acq_rel(unsigned* ctr, int nslots) {
  __shared__ bool lastBlock;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned old;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;\n" : "=r"(old) : "l"(ctr) : "memory");
    lastBlock = old == static_cast<unsigned>(nslots) - 1u;
    if (lastBlock) *ctr = 0u;
  }
  __syncthreads();
  return lastBlock;
}

// KASCADE_VARIANT_WS_ACC (bit 536870912, session 11; W with bit 4194304, at most kWsAccRows rows): the split merge by
// f64 sums. Every CTA, beside storing its partial (m, l, o) in its slot as before, adds 2^m o and 2^m l to its row's f64
// accumulator (red.global.add.f64; 2^m as ex2(m - floor m) times 2^floor m, exact in f64 for |m| <= kWsAccRange, so
// the adds' order changes only f64 rounding), and the row's last CTA loads only the accumulator (GS x (D + 1) doubles,
// one L2 round trip, where ws_merge_slots loads 16 slots' o and (m, l): call A's ws trace at 128k batch 1, those loads
// landed after 1.15-1.25 us, the accumulator's after 0.35-0.5), divides, and zeroes it for the next launch. A CTA whose
// |m| exceeds kWsAccRange (or is NaN) adds nothing and raises the row's flag; the last CTA then merges the slots instead
// (ws_merge_slots, as without the bit).
constexpr int kWsAccRows = 64;
constexpr int kWsAccCols = 8 * 128 + 8;  // GS x D sums of 2^m o, then GS sums of 2^m l (GS <= 8, D 128)
constexpr float kWsAccRange = 768.f;
__device__ double g_ws_acc[kWsAccRows][kWsAccCols];  // zero at module load, zeroed by the row's last CTA
__device__ unsigned g_ws_acc_over[kWsAccRows];

__device__ __forceinline__ bool ws_acc_ok(float M) { return fabsf(M) <= kWsAccRange; }  // false for NaN and +-inf

// 2^x by one MUFU.EX2 (ex2.approx.ftz: results below 2^-126 flush to 0; exp2(-inf) = 0).
__device__ __forceinline__ float ex2_approx_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The W epilogue under bit 536870912: the consumer warps' states merged through shared memory (kWsMergePad rows, as bit
// 4194304; session 12: every warp's state loaded at once, tree sums), each thread taking its element's head max M once:
// the partial (M, L, o) stored in slot `split` (as store_split_and_merge) and 2^M o, 2^M L added to the row's accumulator.
template <int D, int GS, int NW, int NT>
__device__ __forceinline__ void ws_store_and_accumulate(float* red, float m, float l, const float (&acc)[D / 8][2],
                                                        float* part_o, float* part_ml, int splits, int split,
                                                        size_t bh0, int row, bool marks) {
  constexpr int RS = D + kWsMergePad;
  float* red_ml = red + NW * GS * RS;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, r = lane >> 2, quad = lane & 3;
  if (warp < NW && r < GS) {
    if (quad == 0) {
      red_ml[(warp * GS + r) * 2] = m;
      red_ml[(warp * GS + r) * 2 + 1] = l;
    }
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb)
      *reinterpret_cast<float2*>(red + (warp * GS + r) * RS + nb * 8 + quad * 2) = make_float2(acc[nb][0], acc[nb][1]);
  }
  __syncthreads();
  if (marks && tid == 0) ws_mark(8);
  double* accRow = g_ws_acc[row];
  for (int i = tid; i < GS * D; i += NT) {
    const int h = i / D, d = i % D;
    // Session 12: every warp's (m, l) and o loaded first, the head max and the sums as trees, one ex2.approx per warp (a
    // warp with m = -inf weighs exp2(-inf) = 0; all empty: M = -inf, o = L = 0). Call A's trace (marks 8, 9) put session
    // 11's loop (one warp after the other: a shared load, exp2f with its range fix-ups and a branch per warp) at
    // 0.61-0.64 us in every CTA; call B's at 0.45 (B's trace: that loop 0.67-0.70).
    float M, o, L;
    {
      float2 mlw[NW];
      float ow[NW];
#pragma unroll
      for (int w = 0; w < NW; ++w) {
        mlw[w] = *reinterpret_cast<const float2*>(red_ml + (w * GS + h) * 2);
        ow[w] = red[(w * GS + h) * RS + d];
      }
      float mx[NW];
#pragma unroll
      for (int w = 0; w < NW; ++w) mx[w] = mlw[w].x;
#pragma unroll
      for (int step = 1; step < NW; step *= 2)
#pragma unroll
        for (int w = 0; w + step < NW; w += 2 * step) mx[w] = fmaxf(mx[w], mx[w + step]);
      M = mx[0];
      const float Mref = M == -INFINITY ? 0.f : M;
      float lw[NW], pw[NW];
#pragma unroll
      for (int w = 0; w < NW; ++w) {
        const float c = ex2_approx_ftz(mlw[w].x - Mref);
        lw[w] = mlw[w].y * c;
        pw[w] = ow[w] * c;
      }
#pragma unroll
      for (int step = 1; step < NW; step *= 2)
#pragma unroll
        for (int w = 0; w + step < NW; w += 2 * step) {
          lw[w] += lw[w + step];
          pw[w] += pw[w + step];
        }
      L = lw[0];
      o = pw[0];
    }
    if (marks && i == 0) {  // trace mark 9: thread 0's element merged (a branch on it orders the mark after it)
      if (__float_as_uint(o + L + M) != 0x7fbadbadu) ws_mark(9);
    }
    part_o[((bh0 + h) * splits + split) * D + d] = o;
    if (d == 0) {
      float* ml = part_ml + ((bh0 + h) * splits + split) * 2;
      ml[0] = M;
      ml[1] = L;
    }
    if (M == -INFINITY) continue;  // an empty split adds nothing
    if (ws_acc_ok(M)) {
      // Session 12: 2^M o as (2^(M - floor M) o) in f32 (one rounding) times 2^floor M (exact in f64).
      const float f = floorf(M);
      const float s2 = ex2_approx_ftz(M - f);
      const double p2 = __longlong_as_double(static_cast<long long>(static_cast<int>(f) + 1023) << 52);
      atomicAdd(accRow + i, static_cast<double>(o * s2) * p2);
      if (d == 0) atomicAdd(accRow + GS * D + h, static_cast<double>(L * s2) * p2);
    } else if (d == 0) {
      g_ws_acc_over[row] = 1u;
    }
  }
}

// The row's last CTA with the f64 accumulator: one round trip for the sums and the flag; the output, or (flag) the
// slots' merge; the accumulator and the flag zeroed for the next launch.
template <typename T, int D, int GS, int NT>
__device__ __forceinline__ void ws_finish_acc(int row, const float* part_o, const float* part_ml, int S, size_t bh0,
                                              T* out, bool marks) {
  double* accRow = g_ws_acc[row];
  const int tid = static_cast<int>(threadIdx.x);
  constexpr int kPer = (GS * D + NT - 1) / NT;
  const unsigned over = __ldcg(g_ws_acc_over + row);
  double o[kPer], L[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int e = tid + u * NT;
    o[u] = e < GS * D ? __ldcg(accRow + e) : 0.0;
    L[u] = e < GS * D ? __ldcg(accRow + GS * D + e / D) : 1.0;
  }
  if (marks && tid == 0) {  // trace mark 7: thread 0's loads have landed (the branch waits for them)
    const double chk = o[0] + L[0];
    if (__double_as_longlong(chk) != 0x7ff4badbadbadbadll) ws_mark(7);
  }
  if (over) {
    ws_merge_slots<T, D, GS, NT>(part_o, part_ml, S, bh0, out);
  } else {
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int e = tid + u * NT;
      if (e < GS * D) out[bh0 * D + e] = from_float<T>(static_cast<float>(o[u] / L[u]));
    }
  }
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int e = tid + u * NT;
    if (e < GS * D) accRow[e] = 0.0;
  }
  __syncthreads();  // every thread has read its heads' sums of 2^m l and the flag
  if (tid < GS) accRow[GS * D + tid] = 0.0;
  if (tid == 0 && over) g_ws_acc_over[row] = 0u;
}

// merge: 0 the combine kernel merges the slots after this one, 1 the row's last CTA merges them (counter g_ws_done),
// 2 (bit 536870912, session 11; W with bit 4194304) as 1 through the row's f64 accumulator (ws_store_and_accumulate).
// E (bit 33554432, session 10; K rows, wide CTAs): the early sparse pass (a.early, below).
template <typename T, int D, int GS, bool LG, bool RG = false, bool W = false, bool E = false>
__global__ void __launch_bounds__(WsCfg<D, W>::kThreads, WsCfg<D, W>::kMinBlocks)
    gather_ws_kernel(KascadeDecodeShape s, PartialArgs a, int merge, int trace) {
  using C = WsCfg<D, W>;
  static_assert(sizeof(float) * C::kConsumers * GS * (D + kWsMergePad + 2) <= ws_region_bytes<T, D, GS, W>(),
                "the padded warp merge fits the ring");
  constexpr int NS = C::kStages, SK = C::kStageKeys, R = C::kRow, NC = C::kConsumers, NP = C::kProducers;
  constexpr unsigned kRowBytes = D * sizeof(T);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + NS * SK * R;
  float* lgS = reinterpret_cast<float*>(Ks);  // LG: [stage][entry][GS] logits where the K ring would be
  int* posS = reinterpret_cast<int*>(smem_raw + ws_region_bytes<T, D, GS, W>());
  // Barriers [stage][producer]: `full` completes when the producer's 16 rows of the stage have landed,
  // `empty` when its consumer has read them.
  uint64_t* full = reinterpret_cast<uint64_t*>(posS + NS * SK);
  uint64_t* empty = full + NS * NP;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const bool marks = trace != 0;
  if (marks && tid == 0) {
    ws_mark(0);
    ws_mark(4);
  }
  if (tid == 0) {
    for (int i = 0; i < NS * NP; ++i) {
      mbar_init(full + i, 1);
      mbar_init(empty + i, 1);
    }
  }
  mbar_fence_init();
  __syncthreads();
  // Bit 4096 (session 7): launched as a programmatic dependent launch, the grid may start while the kernel before
  // it (the anchors' select) finishes; nothing global is read before that kernel is done. Early (bit 33554432,
  // session 10): the index list is read as the select's ready count allows (below), and the kernel waits for the
  // select's grid only at its end (so that whatever follows this grid also follows the select).
  constexpr bool early = E;
  if (s.variant & KASCADE_VARIANT_PDL) {
    if (!early) pdl_wait();
    pdl_release();
  }

  const int split = blockIdx.x, j = blockIdx.y, b = blockIdx.z;
  const int G = s.kvHeads, n = s.n;
  // The split's list entries: [begin, end) in stages of SK entries; early, its 16-entry groups split, split + splits,
  // ... (`ngroups` of them, NC per stage), so that the groups past the select's phase-2 count come last in every split.
  const int begin = early ? 0 : split * a.chunk, end = early ? a.topk : min(a.topk, begin + a.chunk);
  const int listGroups = (a.topk + 15) / 16;
  const int ngroups = b1_early_groups(listGroups, split, a.splits);  // early (b1_early.cuh)
  const int stages = early ? (ngroups + NC - 1) / NC : end > begin ? (end - begin + SK - 1) / SK : 0;
  // Group w (0..NC-1) of stage i: live (it has entries), and the list entry of its row `row`.
  auto group_live = [&](int i, int w) { return early ? i * NC + w < ngroups : begin + i * SK + w * 16 < end; };
  auto entry_of = [&](int i, int w, int row) {
    return early ? b1_early_group(i, w, NC, split, a.splits) * 16 + row : begin + i * SK + w * 16 + row;
  };
  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t bh0 = static_cast<size_t>(b) * s.heads + static_cast<size_t>(j) * GS;

  float m = -INFINITY, l = 0.f;
  float acc[D / 8][2];
#pragma unroll
  for (int nb = 0; nb < D / 8; ++nb) acc[nb][0] = acc[nb][1] = 0.f;

  if (warp >= NC) {
    if constexpr (RG) asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kWsProducerRegs));
    // Producer pr: rows [16 pr, 16 pr + 16) of every stage, lane l the K row (l < 16; LG: the entry's
    // logits) or the V row (l >= 16) l % 16. Its lanes keep the raw indices of the next NS stages in
    // registers (q[u]: stage i with i % NS == u; the loop is unrolled by NS so no register move waits on a
    // load); the range check happens when a stage is issued.
    const int pr = warp - NC, row = lane & 15;
    const size_t selRow = static_cast<size_t>(b) * a.selKvHeads + a.headMap[j];
    const int* idx = a.indices + selRow * a.topk;
    // Early: the row's ready count (entries written + 1) as the select publishes it (st.release after its barrier 2,
    // then after its phase 3); an entry at or past it is loaded only at its stage's issue (kPending until then), after
    // an acquire load has seen it covered. The list is then read through L2 (__ldcg: the select writes it meanwhile).
    const int* readyWord = early ? a.early + selRow * kStateInts + kB1ReadyInt : nullptr;
    constexpr int kPending = -2;
    int ready = 0;  // entries known written (this lane's view)
    auto poll_ready = [&]() {
      int v;
      asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(readyWord) : "memory");
      ready = max(ready, v - 1);
    };
    auto load_raw = [&](int i) -> int {
      const int e = entry_of(i, pr, row);
      if (!(i < stages && e < end)) return -1;
      if (!early) return __ldg(idx + e);
      if (e >= ready) {
        poll_ready();
        if (e >= ready) return kPending;
      }
      return __ldcg(idx + e);
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
        int raw = q[u];
        if (early && raw == kPending) {  // wait until the select has written this entry
          const int e = entry_of(i, pr, row);
          for (poll_ready(); e >= ready; poll_ready()) __nanosleep(128);
          raw = __ldcg(idx + e);
        }
        const int p = (raw >= 0 && raw < n) ? raw : -1;  // an out-of-range index is masked, never read
        q[u] = load_raw(i + NS);
        // A group wholly past the range is neither copied nor computed (its consumer skips it).
        if (!group_live(i, pr)) {
          __syncwarp();
          if (lane == 0) mbar_arrive_expect_tx(fb, 0u);
          continue;
        }
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
    // Back to 128 for the merge below (setmaxnreg.inc waits until the consumers have given theirs back).
    if constexpr (RG) asm volatile("setmaxnreg.inc.sync.aligned.u32 128;\n" ::);
  } else {
    // Consumers.
    if constexpr (RG) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kWsConsumerRegs));
    uint32_t qa[D / 16][4];
    if (!LG) load_q_operand<T, D, GS>(static_cast<const T*>(a.q) + bh0 * D, qa);
    const float qscale = s.scale * kLog2e;
    const bool p16 = (a.variant & KASCADE_VARIANT_P16) != 0;
    const int pw = warp;  // the producer of this consumer's rows
    for (int i = 0; i < stages; ++i) {
      const int st = i % NS;
      mbar_wait(full + st * NP + pw, static_cast<unsigned>(i / NS) & 1u);
      if (marks && i == 0 && tid == 0) ws_mark(1);
      __syncwarp();
      if (group_live(i, warp)) {
        const int r0 = st * SK + warp * 16;
        if (LG)
          attend16_logits<T, D, GS, R>(lgS + r0 * GS, Vs + r0 * R, posS + r0, p16, m, l, acc);
        else
          attend16<T, D, R>(qa, Ks + r0 * R, Vs + r0 * R, posS + r0, qscale, p16, m, l, acc);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(empty + st * NP + pw);
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if constexpr (RG) asm volatile("setmaxnreg.dec.sync.aligned.u32 128;\n" ::);
  }
  __syncthreads();  // every copy has landed (the consumers waited on each stage): the ring is free
  if (marks && tid == 0) ws_mark(2);

  unsigned* ctr = merge ? g_ws_done + (static_cast<size_t>(b) * G + j) : nullptr;
  // W: the partial's stores only here; the row's last CTA then merges in one round trip (ws_merge_slots). Bit 4194304
  // (session 9): the warps merge through bank-conflict-free rows (merge_warps' kPad), and the split counter is taken
  // by one acq_rel atomic (row_last_block_acq_rel).
  const bool wsEpilogue = W && (a.variant & KASCADE_VARIANT_WS_EPILOGUE) != 0;
  const bool wsAcc = wsEpilogue && merge == 2;
  const int accRow = static_cast<int>(static_cast<size_t>(b) * G + j);
  float* red = reinterpret_cast<float*>(smem_raw);
  if (wsAcc)
    ws_store_and_accumulate<D, GS, NC, C::kThreads>(red, m, l, acc, a.part_o, a.part_ml, a.splits, split, bh0, accRow,
                                                    marks);
  else if (wsEpilogue)
    store_split_and_merge<T, D, GS, NC, C::kThreads, kWsMergePad>(red, m, l, acc, a.part_o, a.part_ml, a.splits, split,
                                                                  bh0, static_cast<T*>(a.out), nullptr, true);
  else
    store_split_and_merge<T, D, GS, NC, C::kThreads>(red, m, l, acc, a.part_o, a.part_ml, a.splits, split, bh0,
                                                     static_cast<T*>(a.out), W ? nullptr : ctr, true);
  if constexpr (W) {
    if (marks && tid == 0) ws_mark(5);
    if (ctr && (wsEpilogue ? row_last_block_acq_rel(ctr, a.splits) : row_last_block(ctr, a.splits))) {
      if (marks && tid == 0) ws_mark(6);
      if (wsAcc)
        ws_finish_acc<T, D, GS, C::kThreads>(accRow, a.part_o, a.part_ml, a.splits, bh0, static_cast<T*>(a.out), marks);
      else
        ws_merge_slots<T, D, GS, C::kThreads>(a.part_o, a.part_ml, a.splits, bh0, static_cast<T*>(a.out), marks);
    }
  }
  if (marks && tid == 0) ws_mark(3);
  // Early with bit 4096: the select's grid has finished by now (this CTA read its last entries); waiting for it here
  // keeps the stream's order for the kernels after this one.
  if (early && (s.variant & KASCADE_VARIANT_PDL)) pdl_wait();
}

// KASCADE_WS_TRACE=1: one line per launch on stderr, times in ns from the first CTA's start.
static void ws_trace_print(int ctas, cudaStream_t st) {
  if (cudaStreamSynchronize(st) != cudaSuccess) return;
  const int n = ctas < kWsTraceCtas ? ctas : kWsTraceCtas;
  std::vector<unsigned long long> h(static_cast<size_t>(n) * kWsTraceCols);
  if (cudaMemcpyFromSymbol(h.data(), g_ws_trace, h.size() * sizeof(unsigned long long)) != cudaSuccess) return;
  unsigned long long base = ~0ull;
  for (int c = 0; c < n; ++c) base = std::min(base, h[c * kWsTraceCols]);
  auto col = [&](int k) {
    std::vector<long long> v(n);
    for (int c = 0; c < n; ++c) v[c] = static_cast<long long>(h[c * kWsTraceCols + k] - base);
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto start = col(0), first = col(1), loop = col(2), exit = col(3);
  // Per CTA, exit - loop end (the epilogue: its warps' merge, the partial's stores, the fence and the counter's
  // atomic; the row's last CTA also merges the slots), and the last-exiting CTA's own.
  std::vector<long long> tail(n);
  int lastCta = 0;
  for (int c = 0; c < n; ++c) {
    tail[c] = static_cast<long long>(h[c * kWsTraceCols + 3] - h[c * kWsTraceCols + 2]);
    if (h[c * kWsTraceCols + 3] > h[lastCta * kWsTraceCols + 3]) lastCta = c;
  }
  const long long lastTail = tail[lastCta];
  std::sort(tail.begin(), tail.end());
  auto q = [&](const std::vector<long long>& v, double f) { return v[static_cast<size_t>(f * (n - 1))]; };
  std::fprintf(stderr,
               "[ws trace] ctas %d (ns from the first start): start p50 %lld max %lld | first stage p50 %lld max %lld | "
               "loop end min %lld p10 %lld p50 %lld p90 %lld max %lld | exit max %lld | epilogue p50 %lld max %lld, "
               "the last exit's %lld | first start at globaltimer %llu\n",
               n, q(start, 0.5), q(start, 1), q(first, 0.5), q(first, 1), q(loop, 0), q(loop, 0.1), q(loop, 0.5),
               q(loop, 0.9), q(loop, 1), q(exit, 1), q(tail, 0.5), q(tail, 1), lastTail, base);
  // W (marks 5 and 6): the last-exiting CTA's epilogue as its warps' merge and the partial's stores, the fence and the
  // counter's atomic, the slots' merge.
  const unsigned long long* L = h.data() + static_cast<size_t>(lastCta) * kWsTraceCols;
  if (L[5] >= L[2] && L[6] >= L[5] && L[3] >= L[6] && L[5] > 0 && L[6] > 0)
    std::fprintf(stderr, "[ws trace] last exit's epilogue: warps' merge + stores %lld ns, fence + atomic %lld, slots' merge %lld"
                 " (its loads landed after %lld)\n",
                 static_cast<long long>(L[5] - L[2]), static_cast<long long>(L[6] - L[5]),
                 static_cast<long long>(L[3] - L[6]), L[7] >= L[6] && L[7] <= L[3] ? static_cast<long long>(L[7] - L[6]) : -1ll);
  // Session 12 (bit 536870912): the warps' merge in three steps (marks 8 and 9), for the last exit and the median CTA.
  if (L[8] >= L[2] && L[9] >= L[8] && L[5] >= L[9] && L[8] > 0) {
    std::vector<long long> s1, s2, s3;
    for (int c = 0; c < n; ++c) {
      const unsigned long long* R = h.data() + static_cast<size_t>(c) * kWsTraceCols;
      if (!(R[8] >= R[2] && R[9] >= R[8] && R[5] >= R[9] && R[8] > 0)) continue;
      s1.push_back(static_cast<long long>(R[8] - R[2]));
      s2.push_back(static_cast<long long>(R[9] - R[8]));
      s3.push_back(static_cast<long long>(R[5] - R[9]));
    }
    std::sort(s1.begin(), s1.end());
    std::sort(s2.begin(), s2.end());
    std::sort(s3.begin(), s3.end());
    const size_t mid = s1.size() / 2;
    std::fprintf(stderr,
                 "[ws trace] warps' merge: to the states in shared memory %lld ns, the element merged %lld, its stores and"
                 " adds issued %lld (the last exit's); p50 over %zu CTAs %lld / %lld / %lld\n",
                 static_cast<long long>(L[8] - L[2]), static_cast<long long>(L[9] - L[8]),
                 static_cast<long long>(L[5] - L[9]), s1.size(), s1[mid], s2[mid], s3[mid]);
  }
}

// CTAs of the warp-specialised gather resident per SM (occupancy, queried once per instantiation),
// capped at kLeanMaxCtasPerSm (the workspace's partial slots are sized for that).
template <typename T, int D, int GS, bool LG, bool RG, bool W, bool E>
static int ws_ctas_per_sm(cudaError_t* err) {
  static int perSm = 0;
  if (perSm == 0) {
    constexpr size_t smem = ws_smem_bytes<T, D, GS, W>();
    cudaError_t e = cudaFuncSetAttribute(gather_ws_kernel<T, D, GS, LG, RG, W, E>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    int nb = 0;
    if (e == cudaSuccess)
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, gather_ws_kernel<T, D, GS, LG, RG, W, E>,
                                                        WsCfg<D, W>::kThreads, smem);
    if (e != cudaSuccess) {
      *err = e;
      return 0;
    }
    perSm = nb < 1 ? 1 : (nb > kLeanMaxCtasPerSm ? kLeanMaxCtasPerSm : nb);
  }
  return perSm;
}

template <typename T, int D, int GS, bool LG, bool RG = false, bool W = false, bool E = false>
static cudaError_t launch_ws(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st) {
  cudaError_t e = cudaSuccess;
  if constexpr (RG) {  // the register split only where the kernel holds enough registers for it (above)
    static int regs = -1;
    if (regs < 0) {
      cudaFuncAttributes fa{};
      e = cudaFuncGetAttributes(&fa, gather_ws_kernel<T, D, GS, LG, RG, W, E>);
      if (e != cudaSuccess) return e;
      regs = fa.numRegs;
    }
    if (regs < kWsRegsNeeded) return launch_ws<T, D, GS, LG, false, W, E>(s, a, out, st);
  }
  const int perSm = ws_ctas_per_sm<T, D, GS, LG, RG, W, E>(&e);
  if (e != cudaSuccess) return e;
  a.splits = ws_splits(s, a.topk, perSm, &a.chunk);
  // E (bit 33554432): the grid starts while the select's phase-3 CTAs (one per selection row) still hold their SMs, and
  // a wide CTA does not fit beside one: the rows' splits fill the SMs left (at 128k batch 1 15 per row, 120 CTAs, where
  // 16 left 4 CTAs to start ~7 us late: call A of session 10, anchor 117.95 against 113.63 us with 15, probe).
  if (E && s.splits <= 0) {
    const long long rows = static_cast<long long>(s.batch) * s.kvHeads, free = device_sm_count() - rows;
    int c;
    if (perSm == 1 && free >= rows) a.splits = std::min(a.splits, grain_split_count(rows, a.topk, free, kWsGroup, &c));
  }
  const char* tenv = std::getenv("KASCADE_WS_TRACE");
  const int trace = tenv && tenv[0] == '1' ? 1 : 0;
  const bool fused = static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows &&
                     sizeof(float) * GS * static_cast<size_t>(a.splits) <= ws_region_bytes<T, D, GS, W>();
  // Bit 536870912 (session 11): the fused merge through the rows' f64 accumulators (W, bit 4194304, <= 64 rows).
  const bool acc = fused && W && D == 128 && GS * D + GS <= kWsAccCols && (s.variant & KASCADE_VARIANT_WS_ACC) != 0 &&
                   (s.variant & KASCADE_VARIANT_WS_EPILOGUE) != 0 &&
                   static_cast<long long>(s.batch) * s.kvHeads <= kWsAccRows;
  e = launch_maybe_pdl((s.variant & KASCADE_VARIANT_PDL) != 0, gather_ws_kernel<T, D, GS, LG, RG, W, E>,
                       dim3(a.splits, s.kvHeads, s.batch), dim3(WsCfg<D, W>::kThreads), ws_smem_bytes<T, D, GS, W>(),
                       st, s, a, acc ? 2 : fused ? 1 : 0, trace);
  if (e == cudaSuccess && trace) ws_trace_print(a.splits * s.kvHeads * s.batch, st);
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
  // The anchors' sparse pass after the b1 select passes its logits (a.logits): the scores come from them
  // and only V rows are copied (tuning: KASCADE_SPARSE_LOGITS=0 copies K rows and recomputes the scores).
  const char* env = std::getenv("KASCADE_SPARSE_LOGITS");
  const bool lg = a.logits != nullptr && !(env && env[0] == '0');
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&] {
      return KASCADE_GROUP_SWITCH(g, GS, [&]() -> cudaError_t {
        auto go = [&](auto wideTag) -> cudaError_t {
          constexpr bool kWide = decltype(wideTag)::value;
          // The early sparse pass (bit 33554432, a.early set by anchor_decode.cu) with K rows and wide CTAs only;
          // otherwise the kernel waits for the select as before (the select's published counts go unread).
          const bool early = kWide && !lg && a.early != nullptr;
          if (!early) a.early = nullptr;
          if (lg) return launch_ws<T, D, GS, true, false, kWide>(s, a, out, st);
          // Bit 65536 (the register split) where the consumers spill without it: D 128 with K rows (the logits mode
          // fits in 128).
          if constexpr (D == 128 && kWide) {
            if (early && (s.variant & KASCADE_VARIANT_WS_REGS))
              return launch_ws<T, D, GS, false, true, true, true>(s, a, out, st);
            if (early) return launch_ws<T, D, GS, false, false, true, true>(s, a, out, st);
          }
          if constexpr (D == 128)
            if (s.variant & KASCADE_VARIANT_WS_REGS) return launch_ws<T, D, GS, false, true, kWide>(s, a, out, st);
          return launch_ws<T, D, GS, false, false, kWide>(s, a, out, st);
        };
        // Bit 64 (session 8): one wide CTA per SM, at head dim 128.
        if constexpr (D == 128)
          if (s.variant & KASCADE_VARIANT_WS_WIDE) return go(std::true_type{});
        return go(std::false_type{});
      });
    });
  });
}

}  // namespace kascade
