// Hopper warpgroup MMA (wgmma) helpers shared by the TMA prefill kernels (prefill_dense_v9.cu, prefill_stats_v17.cu,
// prefill_pool_v17.cu, prefill_sparse_v9.cu): the exponentials, the accumulator helpers (masks, row max, the
// pooled pair sums), the wgmma fences and the m64n128k16 products. Shared-memory operands are 128-byte-swizzled
// tiles (their descriptors: prefill_tma.cuh). sm_90a only.
#pragma once
#include "prefill_attention.cuh"
#include "prefill_tma.cuh"

namespace kascade {
namespace pf {
namespace wg {

__device__ __forceinline__ float ex2f(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Helpers on the m64nNk16 accumulator of one warpgroup: thread (warp w, lane = 4 row + quad) holds, for column
// block nb (8 columns), acc[nb * 4 + e] at row 16 w + row, column 8 nb + 2 quad + e and acc[nb * 4 + 2 + e] at
// row + 8 (e = 0, 1).
//
// Causal mask of a score tile S = Q K^T (rows = queries at positions pos0 / pos1, columns = keys kFirst ..): keys
// after a row's position or at / past listLen set to -inf. NB column blocks.
template <int NB>
__device__ __forceinline__ void mask_causal(float* sacc, int kFirst, int quad, int pos0, int pos1, int listLen) {
#pragma unroll
  for (int nb = 0; nb < NB; ++nb)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int p = kFirst + nb * 8 + quad * 2 + e;
      if (p > pos0 || p >= listLen) sacc[nb * 4 + e] = -INFINITY;
      if (p > pos1 || p >= listLen) sacc[nb * 4 + 2 + e] = -INFINITY;
    }
}
// The two rows' maxima of a score tile over its NB column blocks and the thread quad.
template <int NB>
__device__ __forceinline__ void row_max_quad(const float* sacc, float& mx0, float& mx1) {
  mx0 = -INFINITY;
  mx1 = -INFINITY;
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) {
    mx0 = fmaxf(mx0, fmaxf(sacc[nb * 4], sacc[nb * 4 + 1]));
    mx1 = fmaxf(mx1, fmaxf(sacc[nb * 4 + 2], sacc[nb * 4 + 3]));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
}
// The pools' step (S^T = K Q^T: rows = keys, columns = query rows): the two keys' pooled scores, sum over the NB
// column blocks and the quad of exp2(s * qscale - c_column), c from the row constants Cs (M + log2 L).
// With the row constants of the first NR column blocks in registers (pool v75): c[nb] = Cs[nb * 8 + quad * 2 .. + 1]
// for nb < NR, the rest from Cs; the same sums in the same order (the same bits) for every NR. NR = 0 (c unused) is
// pooled_pair.
template <int NB, int NR>
__device__ __forceinline__ void pooled_pair_reg(const float* acc, const float2* c, const float* Cs, float qscale,
                                                int quad, float& p0, float& p1) {
  p0 = 0.f;
  p1 = 0.f;
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) {
    const float2 cc = nb < NR ? c[nb < NR ? nb : 0] : *reinterpret_cast<const float2*>(Cs + nb * 8 + quad * 2);
    p0 += ex2f(fmaf(acc[nb * 4 + 0], qscale, -cc.x)) + ex2f(fmaf(acc[nb * 4 + 1], qscale, -cc.y));
    p1 += ex2f(fmaf(acc[nb * 4 + 2], qscale, -cc.x)) + ex2f(fmaf(acc[nb * 4 + 3], qscale, -cc.y));
  }
  p0 += __shfl_xor_sync(0xffffffffu, p0, 1);
  p0 += __shfl_xor_sync(0xffffffffu, p0, 2);
  p1 += __shfl_xor_sync(0xffffffffu, p1, 1);
  p1 += __shfl_xor_sync(0xffffffffu, p1, 2);
}

template <int NB>
__device__ __forceinline__ void pooled_pair(const float* acc, const float* Cs, float qscale, int quad, float& p0,
                                            float& p1) {
  pooled_pair_reg<NB, 0>(acc, nullptr, Cs, qscale, quad, p0, p1);
}

// Dense v9's and sparse v9's online softmax of the masked scores in sacc (16 column blocks): the new row maxima,
// the factor O must be scaled by (al0 / al1, applied once the P V in flight is done), P = 2^(s * qscale - max) in
// place (f32) and the row sums.
__device__ __forceinline__ void online_softmax(float* sacc, float qscale, float& m0, float& m1, float& l0, float& l1,
                                               float& al0, float& al1) {
  float mx0, mx1;
  row_max_quad<16>(sacc, mx0, mx1);
  const float mn0 = fmaxf(m0, mx0 * qscale), mn1 = fmaxf(m1, mx1 * qscale);
  al0 = mn0 == -INFINITY ? 1.f : ex2f(m0 - mn0);
  al1 = mn1 == -INFINITY ? 1.f : ex2f(m1 - mn1);
  const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
  float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
  for (int nb = 0; nb < 16; ++nb) {
    sacc[nb * 4 + 0] = ex2f(fmaf(sacc[nb * 4 + 0], qscale, -b0));
    sacc[nb * 4 + 1] = ex2f(fmaf(sacc[nb * 4 + 1], qscale, -b0));
    sacc[nb * 4 + 2] = ex2f(fmaf(sacc[nb * 4 + 2], qscale, -b1));
    sacc[nb * 4 + 3] = ex2f(fmaf(sacc[nb * 4 + 3], qscale, -b1));
    rs0 += sacc[nb * 4 + 0] + sacc[nb * 4 + 1];
    rs1 += sacc[nb * 4 + 2] + sacc[nb * 4 + 3];
  }
  l0 = l0 * al0 + rs0;
  l1 = l1 * al1 + rs1;
  m0 = mn0;
  m1 = mn1;
}
// After the P V in flight is done: O *= al where a row max moved, P -> 16-bit A registers (k-slice kk = nb / 2:
// a0 / a1 = keys kk * 16 + quad * 2 (rows 0 / 8 of the thread), a2 / a3 = the same + 8).
template <typename T>
__device__ __forceinline__ void rescale_pack(float* o, const float* sacc, float al0, float al1, uint32_t (&pa)[8][4]) {
  if (__any_sync(0xffffffffu, al0 != 1.f || al1 != 1.f)) {
#pragma unroll
    for (int nb = 0; nb < 16; ++nb) {
      o[nb * 4 + 0] *= al0;
      o[nb * 4 + 1] *= al0;
      o[nb * 4 + 2] *= al1;
      o[nb * 4 + 3] *= al1;
    }
  }
#pragma unroll
  for (int nb = 0; nb < 16; ++nb) {
    pa[nb >> 1][(nb & 1) * 2 + 0] = pack2<T>(sacc[nb * 4 + 0], sacc[nb * 4 + 1]);
    pa[nb >> 1][(nb & 1) * 2 + 1] = pack2<T>(sacc[nb * 4 + 2], sacc[nb * 4 + 3]);
  }
}

// The normalized output rows qi0 / qi1 (when < Q) of an m64n128 O accumulator: out[(qBase + qi) * 128 + column].
template <typename T>
__device__ __forceinline__ void store_o_rows(T* out, const float* o, float l0, float l1, size_t qBase, int qi0,
                                             int qi1, int Q, int quad) {
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
  for (int nb = 0; nb < 16; ++nb) {
    if (qi0 < Q)
      *reinterpret_cast<uint32_t*>(out + (qBase + qi0) * 128 + nb * 8 + quad * 2) =
          pack2<T>(o[nb * 4 + 0] * inv0, o[nb * 4 + 1] * inv0);
    if (qi1 < Q)
      *reinterpret_cast<uint32_t*>(out + (qBase + qi1) * 128 + nb * 8 + quad * 2) =
          pack2<T>(o[nb * 4 + 2] * inv1, o[nb * 4 + 3] * inv1);
  }
}

__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// cp.async / st.shared writes -> visible to the tensor cores' async proxy (then a block barrier).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Pins accumulator registers in program order around asynchronous MMAs (no compiler motion across).
template <int N>
__device__ __forceinline__ void pin(float* r) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// wgmma.mma_async m64n128k16, f32 accumulate, written once per 16-bit type by the macro below. _rs: A (4 registers,
// the mma.sync m16n8k16 A layout per warp) and B from shared memory (TRANS_B: B N-major); _ss: both from shared
// memory (K-major). scaleD = 0: D = A B.
#define KASCADE_WGMMA_D64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define KASCADE_WGMMA_D64_OUT \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define KASCADE_WGMMA_M64N128K16(T, PTX)                                                                           \
  template <int TRANS_B>                                                                                          \
  __device__ __forceinline__ void wgmma_m64n128k16_rs(float* d, const uint32_t* a, uint64_t desc, int scaleD, T) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\nwgmma.mma_async.sync.aligned.m64n128k16.f32." PTX  \
                 "." PTX " " KASCADE_WGMMA_D64 ", {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"               \
                 : KASCADE_WGMMA_D64_OUT                                                                           \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scaleD), "n"(TRANS_B));            \
  }                                                                                                               \
  __device__ __forceinline__ void wgmma_m64n128k16_ss(float* d, uint64_t descA, uint64_t descB, int scaleD, T) {   \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\nwgmma.mma_async.sync.aligned.m64n128k16.f32." PTX  \
                 "." PTX " " KASCADE_WGMMA_D64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"                               \
                 : KASCADE_WGMMA_D64_OUT                                                                           \
                 : "l"(descA), "l"(descB), "r"(scaleD));                                                           \
  }
KASCADE_WGMMA_M64N128K16(__nv_bfloat16, "bf16")
KASCADE_WGMMA_M64N128K16(__half, "f16")
#undef KASCADE_WGMMA_M64N128K16
#undef KASCADE_WGMMA_D64_OUT
#undef KASCADE_WGMMA_D64

// acc = A B^T on the tensor cores (m64n128, K = 128 in eight k16 slices, both operands 128-byte-swizzled TMA tiles of
// aRows / bRows rows per 64-column region: A's 64 rows from a, B's 128 from b), issued and committed, not waited for.
template <typename T>
__device__ __forceinline__ void issue_ab(float* acc, const T* a, int aRows, const T* b, int bRows) {
  pin<64>(acc);
  fence();
#pragma unroll
  for (int kc = 0; kc < 8; ++kc)
    wgmma_m64n128k16_ss(acc, tma::k_desc(a, aRows, kc), tma::k_desc(b, bRows, kc), kc > 0 ? 1 : 0, T{});
  commit();
  pin<64>(acc);
}

// issue_ab from the low descriptor words of A's and B's slice 0 (tma::k_desc_lo; A_ROWS / B_ROWS rows per 64-column
// region, known at compile time): each slice's descriptors are one add each (pool v64).
template <typename T, int A_ROWS, int B_ROWS>
__device__ __forceinline__ void issue_ab_lo(float* acc, uint32_t aLo, uint32_t bLo) {
  pin<64>(acc);
  fence();
#pragma unroll
  for (int kc = 0; kc < 8; ++kc)
    wgmma_m64n128k16_ss(acc, static_cast<uint64_t>(tma::kDescHi) << 32 | (aLo + tma::k_desc_step(A_ROWS, kc)),
                        static_cast<uint64_t>(tma::kDescHi) << 32 | (bLo + tma::k_desc_step(B_ROWS, kc)),
                        kc > 0 ? 1 : 0, T{});
  commit();
  pin<64>(acc);
}

// o += P V (m64n128, P as the 16-bit register operand pa, V a swizzled TMA tile of `keys` rows per 64-column region),
// issued and committed, not waited for.
template <typename T>
__device__ __forceinline__ void issue_pv_rs(float* o, const uint32_t (*pa)[4], const T* v, int keys) {
  pin<64>(o);
  fence();
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) wgmma_m64n128k16_rs<1>(o, pa[kk], tma::v_desc(v, keys, kk), 1, T{});
  commit();
  pin<64>(o);
}

// The consumer loop of dense v9 and sparse v9 (64 accumulator floats per thread): S(i) issued, then P(i - 1) V(i - 1)
// on the tensor cores while S(i) is masked (mask_step) and its online softmax taken; after_s(i) runs once S(i) is
// done, after_pv(i, last) once P(i) V(i) is (the last step's too, last = true), rescale_pack packs P(i) into pa
// for the next P V.
template <typename IS, typename IPV, typename AS, typename MS, typename SM, typename RP, typename APV>
__device__ __forceinline__ void attention_steps(int steps, float* sacc, float* o, const uint32_t (*pa)[4], IS issue_s,
                                                IPV issue_pv, AS after_s, MS mask_step, SM softmax, RP rescale_pack,
                                                APV after_pv) {
  issue_s(sacc, 0);
  wait0();
  pin<64>(sacc);
  after_s(0);
  mask_step(sacc, 0);
  softmax();
  rescale_pack();
#pragma unroll 1
  for (int i = 1; i < steps; ++i) {
    issue_s(sacc, i);
    issue_pv(o, pa, i - 1);
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    pin<64>(sacc);
    after_s(i);
    mask_step(sacc, i);
    softmax();
    wait0();
    pin<64>(o);
    after_pv(i - 1, false);
    rescale_pack();
  }
  issue_pv(o, pa, steps - 1);
  wait0();
  pin<64>(o);
  after_pv(steps - 1, true);
}

}  // namespace wg
}  // namespace pf
}  // namespace kascade
