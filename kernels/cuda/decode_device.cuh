// Device helpers shared by the decode attention kernels (decode_attention.cu) and the warp-specialised
// gather (reuse_b1_decode.cu): tensor-core MMA and ldmatrix, 16-bit packing, mbarriers and 1-D bulk
// copies, programmatic dependent launch. Not part of the public C API.
#pragma once
#include <type_traits>

#include "common.cuh"

namespace kascade {

// mma.sync m16n8k16 (f32 accumulate) on 16-bit operands.
template <typename T>
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Variant KASCADE_VARIANT_BULK: one cp.async.bulk (TMA bulk copy) per K or V row, completing on an
// mbarrier per ring stage (transaction bytes), instead of D/8 16-byte cp.async per row.
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_fence_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes)
               : "memory");
}
// A grid-wide barrier for a cooperative launch (every CTA resident): bar[0] counts arrivals (back to zero
// after each barrier), bar[1] is the generation the waiting CTAs watch; both zero at module load. Ops on one
// stream run one at a time, so one pair per kernel suffices.
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile unsigned* gen = bar + 1;
    const unsigned g = *gen;
    __threadfence();
    if (atomicAdd(bar, 1u) == gridDim.x - 1) {
      atomicExch(bar, 0u);
      __threadfence();
      atomicAdd(bar + 1, 1u);
    } else {
      while (*gen == g) __nanosleep(32);
    }
    __threadfence();
  }
  __syncthreads();
}
// The anchors' pooling: per query head h < GS of a KV-head row (its split partials at ml + h * splits * 2,
// (max, sum) pairs in the log2 domain), the global softmax max Mh[h] and 1 / sum iL[h], one warp per head
// (NT threads call; shared Mh / iL valid after the closing barrier).
template <int GS, int NT>
__device__ __forceinline__ void head_softmax_stats(const float* ml0, int splits, float* Mh, float* iL) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  for (int h = static_cast<int>(threadIdx.x) >> 5; h < GS; h += NT / 32) {
    const float* ml = ml0 + static_cast<size_t>(h) * splits * 2;
    float M = -INFINITY;
    for (int s = lane; s < splits; s += 32) M = fmaxf(M, ml[2 * s]);
    M = warp_max(M);
    float L = 0.f;
    for (int s = lane; s < splits; s += 32)
      if (ml[2 * s] != -INFINITY) L += ml[2 * s + 1] * exp2f(ml[2 * s] - M);
    L = warp_sum(L);
    if (lane == 0) {
      Mh[h] = M;
      iL[h] = 1.f / L;
    }
  }
  __syncthreads();
}
// A shared-memory histogram add aggregated over the warp's lanes with the same bin (skewed scores put
// most keys of a warp in a few bins). Every lane of the warp calls; `active` lanes add.
__device__ __forceinline__ void warp_hist_add(unsigned* h, unsigned bin, bool active) {
  const unsigned act = __ballot_sync(0xffffffffu, active);
  if (!active) return;
  const unsigned peers = __match_any_sync(act, bin);
  if ((threadIdx.x & 31) == static_cast<unsigned>(__ffs(peers) - 1)) atomicAdd(&h[bin], __popc(peers));
}
// A plain arrive (count 1) on an mbarrier: a consumer hands a ring stage back to its producer.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
  const uint32_t a = smem_u32(bar);
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void bulk_g2s(void* smem, const void* gmem, unsigned bytes, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          smem_u32(smem)),
      "l"(gmem), "r"(bytes), "r"(smem_u32(bar))
      : "memory");
}

// A 4-byte cp.async, and an arrive-on the mbarrier once this thread's earlier cp.async copies have landed
// (the pending count rises by one at once and falls when they land: issue it before the phase can complete).
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(smem)), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_mbar_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

// Variant KASCADE_VARIANT_PDL (programmatic dependent launch): the grid may start while the kernel
// before it in the stream still runs; griddepcontrol.wait blocks until that kernel has finished and
// its memory is visible, so nothing global is read or written before it. launch_dependents then lets
// the next PDL-launched kernel start its own launch (it waits the same way): safe at any point, as
// the next grid launches only once every CTA of this one has started (or exited).
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_release() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_wait_and_release() {
  pdl_wait();
  pdl_release();
}

// Q of query heads bh0 .. bh0 + GS - 1 as the A operand of m16n8k16 (row r = lane / 4 a query head
// when r < GS, the other rows zero; k = (lane % 4) * 2 + {0, 1} (+ 8)), D / 16 chunks.
template <typename T, int D, int GS>
__device__ __forceinline__ void load_q_operand(const T* qg, uint32_t (&qa)[D / 16][4]) {
  const int lane = static_cast<int>(threadIdx.x) & 31, row = lane >> 2, quad = lane & 3;
  const T* qr = qg + row * D;
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
    qa[kc][0] = row < GS ? *reinterpret_cast<const uint32_t*>(qr + kc * 16 + quad * 2) : 0u;
    qa[kc][1] = 0u;
    qa[kc][2] = row < GS ? *reinterpret_cast<const uint32_t*>(qr + kc * 16 + 8 + quad * 2) : 0u;
    qa[kc][3] = 0u;
  }
}

// One warp's 16-key step of the online softmax in the log2 domain, in three parts the gathers and the
// contiguous passes share. The warp's thread holds row lane / 4 (a query head when < GS) and keys
// nb * 8 + (lane % 4) * 2 + e of the step; acc[nb][e] = O[row][nb * 8 + (lane % 4) * 2 + e].
// qk16: S = Q K^T on the tensor cores; ld_k(kc, bf) loads K chunk kc's B fragments (ldmatrix_x4 of
// rows (lane / 16) * 8 + lane % 8, 16-byte column chunk 2 kc + (lane / 8) % 2).
template <typename T, int KC, typename LdK>
__device__ __forceinline__ void qk16(const uint32_t (&qa)[KC][4], LdK ld_k, float (&sc)[2][4]) {
#pragma unroll
  for (int nb = 0; nb < 2; ++nb) sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.f;
#pragma unroll
  for (int kc = 0; kc < KC; ++kc) {
    uint32_t bf[4];
    ld_k(kc, bf);
    mma16816<T>(sc[0], qa[kc], bf[0], bf[1]);
    mma16816<T>(sc[1], qa[kc], bf[2], bf[3]);
  }
}
// softmax16: the step's max tm (over the quad: the row's 16 keys) taken into the running max m and sum
// l (this thread's keys only; the quad's four l add up to the row's); pr = exp2(sv - m), al = the
// factor the earlier terms are scaled by.
__device__ __forceinline__ void softmax16(const float (&sv)[4], float tm, float& m, float& l, float (&pr)[4],
                                          float& al) {
  const float mn = fmaxf(m, tm);
  al = 1.f;
  if (mn == -INFINITY) {
    pr[0] = pr[1] = pr[2] = pr[3] = 0.f;
  } else {
#pragma unroll
    for (int t = 0; t < 4; ++t) pr[t] = exp2f(sv[t] - mn);
    al = exp2f(m - mn);
  }
  m = mn;
  l = l * al + (pr[0] + pr[1] + pr[2] + pr[3]);
}
// pv16: acc = al acc + P V; P as the A operand (rows >= 8 zero), split hi + lo 16-bit halves (~16
// significant bits) unless `p16`; ld_v(nd, bf) loads V chunk nd's B fragments (ldmatrix_x4_trans of
// rows (lane / 8) % 2 * 8 + lane % 8, 16-byte column chunk 2 nd + lane / 16).
template <typename T, int KC, typename LdV>
__device__ __forceinline__ void pv16(const float (&pr)[4], float al, bool p16, LdV ld_v, float (&acc)[2 * KC][2]) {
#pragma unroll
  for (int nb = 0; nb < 2 * KC; ++nb) {
    acc[nb][0] *= al;
    acc[nb][1] *= al;
  }
  uint32_t ph[4], pl[4];
  ph[0] = pack2<T>(pr[0], pr[1]);
  ph[2] = pack2<T>(pr[2], pr[3]);
  ph[1] = ph[3] = 0u;
  {
    float h0[2], h1[2];
    to_float2(ph[0], h0, T());
    to_float2(ph[2], h1, T());
    pl[0] = pack2<T>(pr[0] - h0[0], pr[1] - h0[1]);
    pl[2] = pack2<T>(pr[2] - h1[0], pr[3] - h1[1]);
    pl[1] = pl[3] = 0u;
  }
  auto pv = [&](auto withLo) {
#pragma unroll
    for (int nd = 0; nd < KC; ++nd) {
      uint32_t bf[4];
      ld_v(nd, bf);
      float c0[4] = {acc[2 * nd][0], acc[2 * nd][1], 0.f, 0.f};
      float c1[4] = {acc[2 * nd + 1][0], acc[2 * nd + 1][1], 0.f, 0.f};
      mma16816<T>(c0, ph, bf[0], bf[1]);
      if constexpr (decltype(withLo)::value) mma16816<T>(c0, pl, bf[0], bf[1]);
      mma16816<T>(c1, ph, bf[2], bf[3]);
      if constexpr (decltype(withLo)::value) mma16816<T>(c1, pl, bf[2], bf[3]);
      acc[2 * nd][0] = c0[0];
      acc[2 * nd][1] = c0[1];
      acc[2 * nd + 1][0] = c1[0];
      acc[2 * nd + 1][1] = c1[1];
    }
  };
  if (p16) {
    pv(std::false_type{});
  } else {
    pv(std::true_type{});
  }
}
// The step's softmax and P V from the scores sv (sv[nb * 2 + e]: key nb * 8 + (lane % 4) * 2 + e, row
// lane / 4; -inf where masked) over 16 padded V rows in shared memory (row stride kRow elements).
template <typename T, int D, int kRow>
__device__ __forceinline__ void attend16_pv(const float (&sv)[4], const T* vs, bool p16, float& m, float& l,
                                            float (&acc)[D / 8][2]) {
  const int lane = static_cast<int>(threadIdx.x) & 31, mi = lane >> 3, r8 = lane & 7;
  float tm = fmaxf(fmaxf(sv[0], sv[1]), fmaxf(sv[2], sv[3]));
  tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 1));
  tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, 2));
  float pr[4], al;
  softmax16(sv, tm, m, l, pr, al);
  const T* vb = vs + ((mi & 1) * 8 + r8) * kRow + (mi >> 1) * 8;
  pv16<T, D / 16>(pr, al, p16, [&](int nd, uint32_t* bf) { ldmatrix_x4_trans(bf, vb + nd * 16); }, acc);
}
// This thread's four scores of a 16-key step (sv[nb * 2 + e]: key nb * 8 + (lane % 4) * 2 + e), score(nb,
// e, key) where pos[key] >= 0, -inf where it is masked.
template <typename Score>
__device__ __forceinline__ void masked_scores16(const int* pos, Score score, float (&sv)[4]) {
  const int quad = static_cast<int>(threadIdx.x) & 3;
#pragma unroll
  for (int nb = 0; nb < 2; ++nb)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int key = nb * 8 + quad * 2 + e;
      sv[nb * 2 + e] = pos[key] >= 0 ? score(nb, e, key) : -INFINITY;
    }
}
// The three over 16 padded K and V rows in shared memory (row stride kRow elements: ldmatrix's rows on
// distinct banks), keys with pos[key] < 0 masked: the gathers' step.
template <typename T, int D, int kRow>
__device__ __forceinline__ void attend16(const uint32_t (&qa)[D / 16][4], const T* ks, const T* vs, const int* pos,
                                         float qscale, bool p16, float& m, float& l, float (&acc)[D / 8][2]) {
  const int lane = static_cast<int>(threadIdx.x) & 31, mi = lane >> 3, r8 = lane & 7;
  float sc[2][4];
  const T* kb = ks + ((mi >> 1) * 8 + r8) * kRow + (mi & 1) * 8;
  qk16<T, D / 16>(qa, [&](int kc, uint32_t* bf) { ldmatrix_x4(bf, kb + kc * 16); }, sc);
  float sv[4];
  masked_scores16(pos, [&](int nb, int e, int) { return sc[nb][e] * qscale; }, sv);
  attend16_pv<T, D, kRow>(sv, vs, p16, m, l, acc);
}
// The anchors' sparse step from the scores pass's logits (the keys' log2-domain scaled scores, lg[key * GS +
// h] for query head h < GS) instead of K rows: the same softmax and P V (rows >= GS score 0, as with Q's
// zero rows above).
template <typename T, int D, int GS, int kRow>
__device__ __forceinline__ void attend16_logits(const float* lg, const T* vs, const int* pos, bool p16, float& m,
                                                float& l, float (&acc)[D / 8][2]) {
  const int row = (static_cast<int>(threadIdx.x) & 31) >> 2;
  float sv[4];
  masked_scores16(pos, [&](int, int, int key) { return row < GS ? lg[key * GS + row] : 0.f; }, sv);
  attend16_pv<T, D, kRow>(sv, vs, p16, m, l, acc);
}

// The NW warps of a CTA merge their online-softmax states: each warp's lanes (quad == 0 holds (m, l) of
// its row, all four of the quad its acc columns) go to shared red_o [NW][GS][D] and red_ml [NW][GS][2];
// after a barrier of all NT threads, emit_ml(h, M, L) runs once per head (threads 0..GS-1) and
// emit_o(i, o) once per element i = h * D + d of the merged unnormalised output (threads stride NT).
// Warps >= NW (a producer) only pass the barriers. Without kWithO (a scores-only pass) only (m, l) merge.
// kPad (session 9, the wide ws gather with bit 4194304): red_o's rows D + kPad floats apart and each lane's column pair
// stored as one float2, so a warp's GS rows land on distinct banks (with kPad 0 its four rows share them: 4-way
// conflicts on 32 scalar stores per lane); red_o then holds NW x GS x (D + kPad) floats. The same sums either way.
template <int D, int GS, int NW, int NT, bool kWithO = true, int kPad = 0, typename EmitMl, typename EmitO>
__device__ __forceinline__ void merge_warps(float* red_o, float* red_ml, float m, float l, const float (&acc)[D / 8][2],
                                            EmitMl emit_ml, EmitO emit_o) {
  constexpr int RS = D + kPad;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5, row = lane >> 2, quad = lane & 3;
  if (warp < NW && row < GS) {
    if (quad == 0) {
      red_ml[(warp * GS + row) * 2] = m;
      red_ml[(warp * GS + row) * 2 + 1] = l;
    }
    if constexpr (kWithO) {
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb) {
        if constexpr (kPad > 0) {
          *reinterpret_cast<float2*>(red_o + (warp * GS + row) * RS + nb * 8 + quad * 2) =
              make_float2(acc[nb][0], acc[nb][1]);
        } else {
          red_o[(warp * GS + row) * D + nb * 8 + quad * 2] = acc[nb][0];
          red_o[(warp * GS + row) * D + nb * 8 + quad * 2 + 1] = acc[nb][1];
        }
      }
    }
  }
  __syncthreads();
  if (tid < GS) {
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; ++w) M = fmaxf(M, red_ml[(w * GS + tid) * 2]);
    float L = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) {
      const float mw = red_ml[(w * GS + tid) * 2];
      if (mw != -INFINITY) L += red_ml[(w * GS + tid) * 2 + 1] * exp2f(mw - M);
    }
    emit_ml(tid, M, L);
  }
  if constexpr (kWithO) {
    for (int i = tid; i < GS * D; i += NT) {
      const int h = i / D, d = i % D;
      float M = -INFINITY;
  #pragma unroll
      for (int w = 0; w < NW; ++w) M = fmaxf(M, red_ml[(w * GS + h) * 2]);
      float o = 0.f;
  #pragma unroll
      for (int w = 0; w < NW; ++w) {
        const float mw = red_ml[(w * GS + h) * 2];
        if (mw != -INFINITY) o += red_o[(w * GS + h) * RS + d] * exp2f(mw - M);
      }
      emit_o(i, o);
    }
  }
}

// The fused split merge (KASCADE_VARIANT_FUSED; the warp-specialised gather always): every thread of
// a CTA that has stored its partial (m, l, o) of a (sequence, KV head) row calls this; the last of the
// row's `nslots` CTAs to arrive (counter *ctr, threadfence-reduction pattern, reset by that CTA for the
// next launch) merges slots 0..nslots-1 (slot stride SS in part_o [.., SS, D] / part_ml [.., SS, 2]) of
// the GS query heads from bh0 on into `out`. `wts` is shared scratch of GS x nslots floats. Per output
// float4: even slots into o0, odd into o1, in slot order, `deep` ? 16 : 8 slots' loads in flight at a time
// (the same sums in the same order either way).
// The arrival of one of a row's `nslots` CTAs on its counter *ctr (threadfence-reduction pattern): every thread of
// the CTA calls it after storing its part; true in every thread of the last CTA to arrive, which then sees the
// others' parts (and has reset the counter for the next launch).
__device__ __forceinline__ bool row_last_block(unsigned* ctr, int nslots) {
  __shared__ bool lastBlock;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    lastBlock = atomicAdd(ctr, 1u) == static_cast<unsigned>(nslots) - 1u;
    if (lastBlock) *ctr = 0u;
  }
  __syncthreads();
  if (!lastBlock) return false;
  __threadfence();
  return true;
}
template <typename T, int D, int GS, int NT>
__device__ void merge_row_if_last(unsigned* ctr, int nslots, int SS, const float* part_o, const float* part_ml,
                                  size_t bh0, T* out, float* wts, bool deep) {
  __shared__ float Lh[GS];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (!row_last_block(ctr, nslots)) return;
  const int S = nslots;
  for (int h = warp; h < GS; h += NT / 32) {
    const float* ml = part_ml + (bh0 + h) * SS * 2;
    float M = -INFINITY;
    for (int x = lane; x < S; x += 32) M = fmaxf(M, __ldcg(ml + 2 * x));
    M = warp_max(M);
    float L = 0.f;
    for (int x = lane; x < S; x += 32) {
      const float mx = __ldcg(ml + 2 * x);
      const float w = mx == -INFINITY ? 0.f : exp2f(mx - M);
      wts[h * S + x] = w;
      L += w * __ldcg(ml + 2 * x + 1);
    }
    L = warp_sum(L);
    if (lane == 0) Lh[h] = L;
  }
  __syncthreads();
  auto fma4 = [](float4& o, const float4& t, float w) {
    o.x = fmaf(t.x, w, o.x);
    o.y = fmaf(t.y, w, o.y);
    o.z = fmaf(t.z, w, o.z);
    o.w = fmaf(t.w, w, o.w);
  };
  auto merge = [&](auto depthTag, int i4, float4& o0, float4& o1) {
    constexpr int kDepth = decltype(depthTag)::value;
    const int h = i4 / (D / 4), d = (i4 % (D / 4)) * 4;
    const float4* po = reinterpret_cast<const float4*>(part_o + (bh0 + h) * SS * D + d);
    const float* w = wts + h * S;
    int x = 0;
    for (; x + kDepth <= S; x += kDepth) {
      float4 t[kDepth];
#pragma unroll
      for (int u = 0; u < kDepth; ++u) t[u] = __ldcg(po + (x + u) * (D / 4));
#pragma unroll
      for (int u = 0; u < kDepth; u += 2) {
        fma4(o0, t[u], w[x + u]);
        fma4(o1, t[u + 1], w[x + u + 1]);
      }
    }
    for (; x + 2 <= S; x += 2) {
      fma4(o0, __ldcg(po + x * (D / 4)), w[x]);
      fma4(o1, __ldcg(po + (x + 1) * (D / 4)), w[x + 1]);
    }
    if (x < S) fma4(o0, __ldcg(po + x * (D / 4)), w[x]);
  };
  for (int i4 = tid; i4 < GS * D / 4; i4 += NT) {
    const int h = i4 / (D / 4), d = (i4 % (D / 4)) * 4;
    float4 o0 = make_float4(0.f, 0.f, 0.f, 0.f), o1 = o0;
    if (deep) {
      merge(std::integral_constant<int, 16>{}, i4, o0, o1);
    } else {
      merge(std::integral_constant<int, 8>{}, i4, o0, o1);
    }
    const float lsum = Lh[h];
    T* op = out + (bh0 + h) * D + d;
    op[0] = from_float<T>((o0.x + o1.x) / lsum);
    op[1] = from_float<T>((o0.y + o1.y) / lsum);
    op[2] = from_float<T>((o0.z + o1.z) / lsum);
    op[3] = from_float<T>((o0.w + o1.w) / lsum);
  }
}

// A split CTA's end (the gathers' epilogue): its NW warps' online-softmax states merged (merge_warps) into its partial
// (m, l, o), stored in slot `split` of the row's `splits` slots (part_ml [.., splits, 2], part_o [.., splits, D],
// heads bh0 ..), then, with a counter `ctr`, the row's last CTA merges the slots into `out` (merge_row_if_last,
// `deep` as there). red_o: shared scratch of NW x GS x (D + kPad + 2) floats (also the merge's weights); kPad as in
// merge_warps.
template <typename T, int D, int GS, int NW, int NT, int kPad = 0>
__device__ __forceinline__ void store_split_and_merge(float* red_o, float m, float l, const float (&acc)[D / 8][2],
                                                      float* part_o, float* part_ml, int splits, int split,
                                                      size_t bh0, T* out, unsigned* ctr, bool deep) {
  merge_warps<D, GS, NW, NT, true, kPad>(
      red_o, red_o + NW * GS * (D + kPad), m, l, acc,
      [&](int h, float M, float L) {
        float* ml = part_ml + ((bh0 + h) * splits + split) * 2;
        ml[0] = M;
        ml[1] = L;
      },
      [&](int e, float o) { part_o[((bh0 + e / D) * splits + split) * D + e % D] = o; });
  // The weights reuse red_o (merge_row_if_last's barriers come after every thread's reads above).
  if (ctr) merge_row_if_last<T, D, GS, NT>(ctr, splits, splits, part_o, part_ml, bh0, out, red_o, deep);
}

}  // namespace kascade
