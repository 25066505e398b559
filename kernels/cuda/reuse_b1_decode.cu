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
//   The other bits do not change this kernel.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "b1_l2.cuh"
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
// first rows' latency, the loop's spread over CTAs, the merge).
constexpr int kWsTraceCtas = 4096;
__device__ unsigned long long g_ws_trace[kWsTraceCtas][5];
// Entry k of this CTA's trace row: globaltimer (k < 4) or the SM id (k = 4); no register held between marks.
__device__ __noinline__ void ws_mark(int k) {
  const unsigned cta = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (cta >= static_cast<unsigned>(kWsTraceCtas)) return;
  unsigned long long t;
  if (k < 4) {
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
__device__ __forceinline__ void ws_merge_slots(const float* part_o, const float* part_ml, int S, size_t bh0, T* out) {
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

// KASCADE_VARIANT_WS_TAGGED (session 9, with bit 64): the split merge without a fence or a counter round trip on the
// row's last CTA's path. Per (sequence, KV head) row one 64-bit word: the arrivals in its low half, the launch's
// generation in its high half (zero at module load). Every CTA reads the word when it starts (the generation cannot
// move before its own arrival: same-address coherence), takes its arrival ticket as its loop ends (the atomic's round
// trip overlaps the warps' merge) and stores its partial as 8-byte words (value, tag), tag = a function of the
// generation, with relaxed gpu-scope stores (each 8-byte word single-copy atomic); no fence. The CTA whose ticket is
// the row's last loads the other slots' words at once and re-loads any whose tag is not this launch's (a slot whose
// CTA took its ticket but has not stored yet), merges them with its own partial from shared memory, writes the
// output and opens the next generation (arrivals 0). Tags are nonzero f32 subnormal bit patterns (1 .. 2^23 - 2):
// never a zero or NaN-poisoned workspace, and a partial's (m, l, o) from this or another op is never subnormal-exact
// (the running max keeps o and l at the scale of V and 1).
__device__ unsigned long long g_ws_tagged[kMaxFusedRows];

__device__ __forceinline__ unsigned long long ld_relaxed_u64(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];\n" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_relaxed_u64(unsigned long long* p, unsigned long long v) {
  asm volatile("st.relaxed.gpu.global.b64 [%0], %1;\n" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ ulonglong2 ld_relaxed_u64x2(const unsigned long long* p) {
  ulonglong2 v;
  asm volatile("ld.relaxed.gpu.global.v2.b64 {%0, %1}, [%2];\n" : "=l"(v.x), "=l"(v.y) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ unsigned ws_tag_of(unsigned long long word) {
  return 1u + static_cast<unsigned>((word >> 32) % 0x7FFFFEull);
}
__device__ __forceinline__ unsigned long long ws_tagged(float x, unsigned tag) {
  return (static_cast<unsigned long long>(tag) << 32) | __float_as_uint(x);
}
__device__ __forceinline__ bool ws_has_tag(unsigned long long w, unsigned tag) {
  return static_cast<unsigned>(w >> 32) == tag;
}
__device__ __forceinline__ float ws_value(unsigned long long w) {
  return __uint_as_float(static_cast<unsigned>(w));
}
// The tagged slots in the workspace's partial region (sized by workspace_layout for bit 4194304): o words
// [BH][S][D], then (m, l) words [BH][S][2].
struct WsTaggedSlots {
  unsigned long long* o;
  unsigned long long* ml;
};
__device__ __forceinline__ WsTaggedSlots ws_tagged_slots(float* part_o, size_t BH, int S, int D) {
  unsigned long long* o = reinterpret_cast<unsigned long long*>(part_o);
  return {o, o + BH * static_cast<size_t>(S) * D};
}

// The CTA's end under bit 4194304 (every thread calls it once its loop is over; `word` the row's ticket word, `tag`
// this launch's tag): the warps merge (merge_warps) into shared memory (own_o / own_ml, past merge_warps' scratch)
// while the ticket's atomic is in flight, each partial word is stored tagged, and the row's last CTA merges.
// Per output pair (2 columns of one head) kTpp threads, thread sub over slots sub, sub + kTpp, ... (kPer at a time,
// all their loads issued before the first is used), combined by shuffles.
template <typename T, int D, int GS, int NW, int NT>
__device__ bool ws_tagged_end(float* red, float m, float l, const float (&acc)[D / 8][2], unsigned long long* word,
                              unsigned tag, const WsTaggedSlots& ts, int S, int split, size_t bh0, T* out) {
  __shared__ unsigned long long sTicket;
  float* own_o = red + NW * GS * (D + 2);
  float* own_ml = own_o + GS * D;
  const int tid = static_cast<int>(threadIdx.x);
  unsigned long long ticket = 0;
  if (tid == 0) ticket = atomicAdd(word, 1ull);  // its value is used after the merge below
  merge_warps<D, GS, NW, NT>(
      red, red + NW * GS * D, m, l, acc,
      [&](int h, float M, float L) {
        own_ml[2 * h] = M;
        own_ml[2 * h + 1] = L;
        unsigned long long* p = ts.ml + ((bh0 + h) * S + split) * 2;
        st_relaxed_u64(p, ws_tagged(M, tag));
        st_relaxed_u64(p + 1, ws_tagged(L, tag));
      },
      [&](int e, float o) {
        own_o[e] = o;
        st_relaxed_u64(ts.o + ((bh0 + e / D) * S + split) * D + e % D, ws_tagged(o, tag));
      });
  if (tid == 0) sTicket = ticket;
  __syncthreads();
  const unsigned long long t = sTicket;
  if (static_cast<unsigned>(t) != static_cast<unsigned>(S) - 1u) return false;
  // The row's last CTA.
  constexpr int kPairs = GS * D / 2;
  constexpr int kTpp = NT / kPairs;  // threads per output pair
  static_assert(kTpp >= 1 && kTpp <= 32 && (kTpp & (kTpp - 1)) == 0, "threads per output pair: a power of two <= 32");
  constexpr int kPer = 8;
  const int pair = tid / kTpp, sub = tid % kTpp;
  const int h = pair / (D / 2), d = (pair % (D / 2)) * 2;
  float M = -INFINITY, L = 0.f, O0 = 0.f, O1 = 0.f;
  if (sub == split % kTpp) {
    M = own_ml[2 * h];
    L = own_ml[2 * h + 1];
    O0 = own_o[h * D + d];
    O1 = own_o[h * D + d + 1];
  }
  const unsigned long long* po = ts.o + (bh0 + h) * S * D + d;
  const unsigned long long* pml = ts.ml + (bh0 + h) * S * 2;
  for (int x0 = 0; x0 < S; x0 += kTpp * kPer) {
    ulonglong2 wo[kPer], wml[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int x = x0 + sub + kTpp * u;
      if (x < S && x != split) {
        wo[u] = ld_relaxed_u64x2(po + static_cast<size_t>(x) * D);
        wml[u] = ld_relaxed_u64x2(pml + 2 * x);
      }
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int x = x0 + sub + kTpp * u;
      if (x >= S || x == split) continue;
      // A slot whose CTA has its ticket but not yet its stores: re-load until every word carries this launch's tag.
      while (!(ws_has_tag(wo[u].x, tag) && ws_has_tag(wo[u].y, tag) && ws_has_tag(wml[u].x, tag) &&
               ws_has_tag(wml[u].y, tag))) {
        wo[u] = ld_relaxed_u64x2(po + static_cast<size_t>(x) * D);
        wml[u] = ld_relaxed_u64x2(pml + 2 * x);
      }
      const float mx = ws_value(wml[u].x);
      if (mx == -INFINITY) continue;  // an empty slot
      const float Mn = fmaxf(M, mx);
      const float c = M == -INFINITY ? 0.f : exp2f(M - Mn), w = exp2f(mx - Mn);
      L = fmaf(ws_value(wml[u].y), w, L * c);
      O0 = fmaf(ws_value(wo[u].x), w, O0 * c);
      O1 = fmaf(ws_value(wo[u].y), w, O1 * c);
      M = Mn;
    }
  }
#pragma unroll
  for (int off = 1; off < kTpp; off <<= 1) {
    const float Mo = __shfl_xor_sync(0xffffffffu, M, off), Lo = __shfl_xor_sync(0xffffffffu, L, off);
    const float O0o = __shfl_xor_sync(0xffffffffu, O0, off), O1o = __shfl_xor_sync(0xffffffffu, O1, off);
    const float Mn = fmaxf(M, Mo);
    if (Mn == -INFINITY) continue;
    const float ca = M == -INFINITY ? 0.f : exp2f(M - Mn), cb = Mo == -INFINITY ? 0.f : exp2f(Mo - Mn);
    L = L * ca + Lo * cb;
    O0 = O0 * ca + O0o * cb;
    O1 = O1 * ca + O1o * cb;
    M = Mn;
  }
  if (sub == 0) {
    T* op = out + (bh0 + h) * D + d;
    op[0] = from_float<T>(O0 / L);
    op[1] = from_float<T>(O1 / L);
  }
  // The next launch's generation, its arrivals at 0 (every CTA of this launch has read the word and arrived).
  if (tid == 0) *word = ((t >> 32) + 1ull) << 32;
  return true;
}

// merge: 0 the combine kernel merges the slots after this one, 1 the row's last CTA merges them (counter g_ws_done).
// TG (bit 4194304, with W): the tagged merge (ws_tagged_end) instead of store_split_and_merge + row_last_block.
template <typename T, int D, int GS, bool LG, bool RG = false, bool W = false, bool TG = false>
__global__ void __launch_bounds__(WsCfg<D, W>::kThreads, WsCfg<D, W>::kMinBlocks)
    gather_ws_kernel(KascadeDecodeShape s, PartialArgs a, int merge, int trace) {
  using C = WsCfg<D, W>;
  static_assert(!TG || sizeof(float) * (C::kConsumers + 1) * GS * (D + 2) <= ws_region_bytes<T, D, GS, W>(),
                "the tagged merge's own partial fits past merge_warps' scratch");
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
  if (trace && tid == 0) {
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
  // it (the anchors' select) finishes; nothing global is read before that kernel is done.
  if (s.variant & KASCADE_VARIANT_PDL) pdl_wait_and_release();

  const int split = blockIdx.x, j = blockIdx.y, b = blockIdx.z;
  const int G = s.kvHeads, n = s.n;
  const int begin = split * a.chunk, end = min(a.topk, begin + a.chunk);
  const int stages = end > begin ? (end - begin + SK - 1) / SK : 0;
  const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
  const T* kg = static_cast<const T*>(a.k) + kvBase;
  const T* vg = static_cast<const T*>(a.v) + kvBase;
  const size_t bh0 = static_cast<size_t>(b) * s.heads + static_cast<size_t>(j) * GS;
  // TG: this launch's tag, from the row's ticket word as the CTA starts (read before its own arrival).
  __shared__ unsigned sTag;
  if constexpr (TG)
    if (merge && tid == 0) sTag = ws_tag_of(ld_relaxed_u64(g_ws_tagged + (static_cast<size_t>(b) * G + j)));

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
        // A group wholly past the range is neither copied nor computed (its consumer skips it).
        if (begin + i * SK + pr * 16 >= end) {
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
      if (trace && i == 0 && tid == 0) ws_mark(1);
      __syncwarp();
      if (begin + i * SK + warp * 16 < end) {
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
  if (trace && tid == 0) ws_mark(2);

  // LG under bit 8388608 (b1_l2.cuh): the row's last CTA drops its KV head's logits from L2 (every CTA of the row has
  // finished reading them: they took their tickets after their last stage landed).
  auto drop_logits = [&] {
    if (LG && (a.variant & KASCADE_VARIANT_B1_L2_LOGITS))
      l2_discard_inside(a.logits + bh0 * n, a.logits + (bh0 + GS) * n, tid, C::kThreads);
  };
  if constexpr (TG) {
    if (merge) {
      if (ws_tagged_end<T, D, GS, NC, C::kThreads>(
              reinterpret_cast<float*>(smem_raw), m, l, acc, g_ws_tagged + (static_cast<size_t>(b) * G + j), sTag,
              ws_tagged_slots(a.part_o, static_cast<size_t>(s.batch) * s.heads, a.splits, D), a.splits, split, bh0,
              static_cast<T*>(a.out)))
        drop_logits();
      if (trace && tid == 0) ws_mark(3);
      return;
    }
  }
  unsigned* ctr = merge ? g_ws_done + (static_cast<size_t>(b) * G + j) : nullptr;
  // W: the partial's stores only here; the row's last CTA then merges in one round trip (ws_merge_slots).
  store_split_and_merge<T, D, GS, NC, C::kThreads>(reinterpret_cast<float*>(smem_raw), m, l, acc, a.part_o, a.part_ml,
                                                   a.splits, split, bh0, static_cast<T*>(a.out), W ? nullptr : ctr,
                                                   true);
  if constexpr (W)
    if (ctr && row_last_block(ctr, a.splits)) {
      ws_merge_slots<T, D, GS, C::kThreads>(a.part_o, a.part_ml, a.splits, bh0, static_cast<T*>(a.out));
      drop_logits();
    }
  if (trace && tid == 0) ws_mark(3);
}

// KASCADE_WS_TRACE=1: one line per launch on stderr, times in ns from the first CTA's start.
static void ws_trace_print(int ctas, cudaStream_t st) {
  if (cudaStreamSynchronize(st) != cudaSuccess) return;
  const int n = ctas < kWsTraceCtas ? ctas : kWsTraceCtas;
  std::vector<unsigned long long> h(static_cast<size_t>(n) * 5);
  if (cudaMemcpyFromSymbol(h.data(), g_ws_trace, h.size() * sizeof(unsigned long long)) != cudaSuccess) return;
  unsigned long long base = ~0ull;
  for (int c = 0; c < n; ++c) base = std::min(base, h[c * 5]);
  auto col = [&](int k) {
    std::vector<long long> v(n);
    for (int c = 0; c < n; ++c) v[c] = static_cast<long long>(h[c * 5 + k] - base);
    std::sort(v.begin(), v.end());
    return v;
  };
  const auto start = col(0), first = col(1), loop = col(2), exit = col(3);
  // Per CTA, exit - loop end (the epilogue: its warps' merge, the partial's stores, the fence and the counter's
  // atomic; the row's last CTA also merges the slots), and the last-exiting CTA's own.
  std::vector<long long> tail(n);
  int lastCta = 0;
  for (int c = 0; c < n; ++c) {
    tail[c] = static_cast<long long>(h[c * 5 + 3] - h[c * 5 + 2]);
    if (h[c * 5 + 3] > h[lastCta * 5 + 3]) lastCta = c;
  }
  const long long lastTail = tail[lastCta];
  std::sort(tail.begin(), tail.end());
  auto q = [&](const std::vector<long long>& v, double f) { return v[static_cast<size_t>(f * (n - 1))]; };
  std::fprintf(stderr,
               "[ws trace] ctas %d (ns from the first start): start p50 %lld max %lld | first stage p50 %lld max %lld | "
               "loop end min %lld p10 %lld p50 %lld p90 %lld max %lld | exit max %lld | epilogue p50 %lld max %lld, "
               "the last exit's %lld\n",
               n, q(start, 0.5), q(start, 1), q(first, 0.5), q(first, 1), q(loop, 0), q(loop, 0.1), q(loop, 0.5),
               q(loop, 0.9), q(loop, 1), q(exit, 1), q(tail, 0.5), q(tail, 1), lastTail);
}

// CTAs of the warp-specialised gather resident per SM (occupancy, queried once per instantiation),
// capped at kLeanMaxCtasPerSm (the workspace's partial slots are sized for that).
template <typename T, int D, int GS, bool LG, bool RG, bool W, bool TG>
static int ws_ctas_per_sm(cudaError_t* err) {
  static int perSm = 0;
  if (perSm == 0) {
    constexpr size_t smem = ws_smem_bytes<T, D, GS, W>();
    cudaError_t e = cudaFuncSetAttribute(gather_ws_kernel<T, D, GS, LG, RG, W, TG>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    int nb = 0;
    if (e == cudaSuccess)
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, gather_ws_kernel<T, D, GS, LG, RG, W, TG>,
                                                        WsCfg<D, W>::kThreads, smem);
    if (e != cudaSuccess) {
      *err = e;
      return 0;
    }
    perSm = nb < 1 ? 1 : (nb > kLeanMaxCtasPerSm ? kLeanMaxCtasPerSm : nb);
  }
  return perSm;
}

template <typename T, int D, int GS, bool LG, bool RG = false, bool W = false, bool TG = false>
static cudaError_t launch_ws(const KascadeDecodeShape& s, PartialArgs& a, void* out, cudaStream_t st) {
  cudaError_t e = cudaSuccess;
  if constexpr (RG) {  // the register split only where the kernel holds enough registers for it (above)
    static int regs = -1;
    if (regs < 0) {
      cudaFuncAttributes fa{};
      e = cudaFuncGetAttributes(&fa, gather_ws_kernel<T, D, GS, LG, RG, W, TG>);
      if (e != cudaSuccess) return e;
      regs = fa.numRegs;
    }
    if (regs < kWsRegsNeeded) return launch_ws<T, D, GS, LG, false, W, TG>(s, a, out, st);
  }
  const int perSm = ws_ctas_per_sm<T, D, GS, LG, RG, W, TG>(&e);
  if (e != cudaSuccess) return e;
  a.splits = ws_splits(s, a.topk, perSm, &a.chunk);
  const char* tenv = std::getenv("KASCADE_WS_TRACE");
  const int trace = tenv && tenv[0] == '1' ? 1 : 0;
  const bool fused = static_cast<long long>(s.batch) * s.kvHeads <= kMaxFusedRows &&
                     sizeof(float) * GS * static_cast<size_t>(a.splits) <= ws_region_bytes<T, D, GS, W>();
  e = launch_maybe_pdl((s.variant & KASCADE_VARIANT_PDL) != 0, gather_ws_kernel<T, D, GS, LG, RG, W, TG>,
                       dim3(a.splits, s.kvHeads, s.batch), dim3(WsCfg<D, W>::kThreads), ws_smem_bytes<T, D, GS, W>(),
                       st, s, a, fused ? 1 : 0, trace);
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
        auto go = [&](auto wideTag, auto taggedTag) -> cudaError_t {
          constexpr bool kWide = decltype(wideTag)::value, kTagged = decltype(taggedTag)::value;
          if (lg) return launch_ws<T, D, GS, true, false, kWide, kTagged>(s, a, out, st);
          // Bit 65536 (the register split) where the consumers spill without it: D 128 with K rows (the logits mode
          // fits in 128).
          if constexpr (D == 128)
            if (s.variant & KASCADE_VARIANT_WS_REGS)
              return launch_ws<T, D, GS, false, true, kWide, kTagged>(s, a, out, st);
          return launch_ws<T, D, GS, false, false, kWide, kTagged>(s, a, out, st);
        };
        // Bit 64 (session 8): one wide CTA per SM, at head dim 128; bit 4194304 (session 9) its tagged merge.
        if constexpr (D == 128)
          if (s.variant & KASCADE_VARIANT_WS_WIDE) {
            if (s.variant & KASCADE_VARIANT_WS_TAGGED) return go(std::true_type{}, std::true_type{});
            return go(std::true_type{}, std::false_type{});
          }
        return go(std::false_type{}, std::false_type{});
      });
    });
  });
}

}  // namespace kascade
