// Prefill attention, variant v3: Hopper wgmma (warpgroup MMA) for both products, otherwise the v1 design.
// Selected by KASCADE_PREFILL_DENSE=v3 (dense, dense + statistics, statistics) and KASCADE_PREFILL_SPARSE=v3
// (sparse, group sizes 2, 4, 8; g = 1 stays on v1); v1 stays the default until parity and timing on the
// H200 back it.
//
// Kernel prefill_attn_wgmma_kernel<T, D, GS, MODE>, 4 warps = one warpgroup, 64 query rows (16 per warp):
//   - dense modes: grid (ceil(queries / 64), heads, batch), the 64 consecutive queries of one head, heaviest
//     blocks first; every warp takes part in every step (wgmma is warpgroup-wide), masks only on steps that
//     cross its diagonal.
//   - sparse: grid (tiles, kvHeads x 2GS / 4, batch); warp = 16-row half of the tile for one query head of
//     the group (the A operand comes from each warp's registers, so the warpgroup's rows may belong to
//     different heads: they share the KV head's gathered rows). Key list as in v1.
//   Per 64-key step: S = Q K^T as D/16 wgmma.m64n64k16 (A = Q fragments in registers, B = K from shared
//   memory), online softmax in registers exactly as v1 (log2 domain, FMA + ex2.approx), then O += P V as
//   4 wgmma.m64n{D}k16 (A = P in registers, B = V from shared memory, transposed: N-major).
//   Shared memory: K and V tiles in the no-swizzle "interleave" layout of 8 x 16-byte core matrices
//   (core matrix (row group rg, 16-byte column chunk cc) at rg * D * 16 + cc * 128 bytes), filled by
//   16-byte cp.async (8 consecutive threads write one 128-byte core matrix). Descriptors: K as the K-major B
//   of S (leading = 128 B to the next 8 columns, stride = D * 16 B to the next 8 keys; the kc-th 16-column
//   slice starts kc * 256 B in); V as the N-major B of P V (leading = D * 16 B to the next 8 keys, stride =
//   128 B to the next 8 columns; the kk-th 16-key slice starts kk * 32 * D B in). 2 stages: 64 KB at D = 128
//   (32 KB statistics-only) + 512 B of key positions. Writes by cp.async become visible to the tensor
//   cores' async proxy through fence.proxy.async before the block barrier.
#include <cstdio>

#include "prefill_attention.cuh"

namespace kascade {
namespace pf {

namespace {

__device__ __forceinline__ float ex2f(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Pins accumulator registers in program order around asynchronous MMAs (no compiler motion across).
template <int N>
__device__ __forceinline__ void pin(float* r) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Shared-memory matrix descriptor, no swizzle: start address, leading / stride byte offsets (16-byte units).
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
         (static_cast<uint64_t>(sbo >> 4) << 32);
}

template <int TRANS_B>
__device__ __forceinline__ void wgmma_m64n64k16_rs(float* d, const uint32_t* a, uint64_t desc, int scaleD, __nv_bfloat16) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scaleD), "n"(TRANS_B));
}

template <int TRANS_B>
__device__ __forceinline__ void wgmma_m64n64k16_rs(float* d, const uint32_t* a, uint64_t desc, int scaleD, __half) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scaleD), "n"(TRANS_B));
}

template <int TRANS_B>
__device__ __forceinline__ void wgmma_m64n128k16_rs(float* d, const uint32_t* a, uint64_t desc, int scaleD, __nv_bfloat16) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scaleD), "n"(TRANS_B));
}

template <int TRANS_B>
__device__ __forceinline__ void wgmma_m64n128k16_rs(float* d, const uint32_t* a, uint64_t desc, int scaleD, __half) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(scaleD), "n"(TRANS_B));
}

template <typename T, int D, int MODE>
constexpr size_t wg_smem_bytes() {
  return static_cast<size_t>((MODE == kStats ? 2 : 4) * kKeys * D) * 2 + 2 * kKeys * sizeof(int);
}

template <typename T, int D, int GS, int MODE>
__global__ void __launch_bounds__(128, 3) prefill_attn_wgmma_kernel(KascadePrefillShape s, PrefillArgs a) {
  constexpr bool kWithV = MODE != kStats;
  constexpr bool kSparseMode = MODE == kSparse;
  constexpr bool kWriteStats = MODE == kDenseStats || MODE == kStats;
  constexpr int WARPS = 4;
  constexpr int KC = D / 16;
  constexpr int NB = D / 8;
  constexpr int NT = WARPS * 32;
  constexpr int CPR = D / 8;          // 16-byte chunks per row
  constexpr int TILE = kKeys * D;     // elements of one stage of K (or V)
  constexpr uint32_t RG = D * 16;     // bytes between 8-row groups

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + 2 * TILE;
  int* posS = reinterpret_cast<int*>(Ks + (kWithV ? 4 : 2) * TILE);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = lane >> 2, quad = lane & 3;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int b = blockIdx.z;

  int h, j, q0w, listLen, cnt = 0, tileStart = 0;
  const int* idx = nullptr;
  if constexpr (kSparseMode) {
    constexpr int BPT = 2 * GS / WARPS;
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
        return (p >= 0 && p < tileStart) ? p : -1;
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
        const int r8 = c & 7, rest = c >> 3;
        const int cc = rest % CPR, rg = rest / CPR;
        const int r = rg * 8 + r8;
        const int p = list_pos(i * kKeys + r);
        if (cc == 0) posS[st * kKeys + r] = p;
        const size_t off = static_cast<size_t>(p < 0 ? 0 : p) * D + cc * 8;
        const int dst = st * TILE + rg * (CPR * 64) + cc * 64 + r8 * 8;
        cp_async16(Ks + dst, kg + off, p < 0 ? 0 : 16);
        if constexpr (kWithV) cp_async16(Vs + dst, vg + off, p < 0 ? 0 : 16);
      }
    }
    cp_async_commit();
  };

  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  float acc[kWithV ? NB : 1][4];
#pragma unroll
  for (int nb = 0; nb < (kWithV ? NB : 1); ++nb) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.f;

  issue(0);
  for (int i = 0; i < steps; ++i) {
    issue(i + 1);
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    const int st = i & 1;
    const int kFirst = i * kKeys;
    bool needMask = true;
    if constexpr (!kSparseMode) {
      const int wMin = s.queryStart + q0w;
      needMask = kFirst + kKeys - 1 > wMin || kFirst + kKeys > listLen;
    }
    float sc[8][4];
    {
      const T* ks = Ks + st * TILE;
      wgmma_fence();
#pragma unroll
      for (int kc = 0; kc < KC; ++kc)
        wgmma_m64n64k16_rs<0>(&sc[0][0], qa[kc], smem_desc(ks + kc * 128, 128, RG), kc > 0 ? 1 : 0, T{});
      wgmma_commit();
      wgmma_wait0();
      pin<32>(&sc[0][0]);
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (needMask) {
          int p;
          if constexpr (kSparseMode) {
            p = posS[st * kKeys + nb * 8 + quad * 2 + e];
          } else {
            p = kFirst + nb * 8 + quad * 2 + e;
            if (p >= listLen) p = -1;
          }
          if (p < 0 || p > pos0) sc[nb][e] = -INFINITY;
          if (p < 0 || p > pos1) sc[nb][2 + e] = -INFINITY;
        }
        mx0 = fmaxf(mx0, sc[nb][e]);
        mx1 = fmaxf(mx1, sc[nb][2 + e]);
      }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0 * qscale), mn1 = fmaxf(m1, mx1 * qscale);
    const float al0 = mn0 == -INFINITY ? 1.f : ex2f(m0 - mn0);
    const float al1 = mn1 == -INFINITY ? 1.f : ex2f(m1 - mn1);
    const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
    float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        sc[nb][e] = ex2f(fmaf(sc[nb][e], qscale, -b0));
        sc[nb][2 + e] = ex2f(fmaf(sc[nb][2 + e], qscale, -b1));
        rs0 += sc[nb][e];
        rs1 += sc[nb][2 + e];
      }
    l0 = l0 * al0 + rs0;
    l1 = l1 * al1 + rs1;
    m0 = mn0;
    m1 = mn1;
    if constexpr (kWithV) {
      uint32_t pa[4][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        pa[kk][0] = pack_2<T>(sc[2 * kk][0], sc[2 * kk][1]);
        pa[kk][1] = pack_2<T>(sc[2 * kk][2], sc[2 * kk][3]);
        pa[kk][2] = pack_2<T>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
        pa[kk][3] = pack_2<T>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
      }
      if (__any_sync(0xffffffffu, al0 != 1.f || al1 != 1.f)) {
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          acc[nb][0] *= al0;
          acc[nb][1] *= al0;
          acc[nb][2] *= al1;
          acc[nb][3] *= al1;
        }
      }
      const T* vs = Vs + st * TILE;
      pin<NB * 4>(&acc[0][0]);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if constexpr (D == 128)
          wgmma_m64n128k16_rs<1>(&acc[0][0], pa[kk], smem_desc(vs + kk * 16 * D, RG, 128), 1, T{});
        else
          wgmma_m64n64k16_rs<1>(&acc[0][0], pa[kk], smem_desc(vs + kk * 16 * D, RG, 128), 1, T{});
      }
      wgmma_commit();
      wgmma_wait0();
      pin<NB * 4>(&acc[0][0]);
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
            pack_2<T>(acc[nb][0] * inv0, acc[nb][1] * inv0);
      if (qi1 < Q)
        *reinterpret_cast<uint32_t*>(o + (qBase + qi1) * D + nb * 8 + quad * 2) =
            pack_2<T>(acc[nb][2] * inv1, acc[nb][3] * inv1);
    }
  }
}

template <typename T, int D, int GS, int MODE>
cudaError_t launch_wgmma_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr size_t smem = wg_smem_bytes<T, D, MODE>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_attn_wgmma_kernel<T, D, GS, MODE>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  dim3 grid;
  if constexpr (MODE == kSparse) {
    grid = dim3(tiles_of(s), s.kvHeads * (2 * GS / 4), s.batch);
  } else {
    grid = dim3(ceil_div(s.queries, 64), s.heads, s.batch);
  }
  prefill_attn_wgmma_kernel<T, D, GS, MODE><<<grid, 128, smem, st>>>(s, a);
  return cudaGetLastError();
}

}  // namespace

bool prefill_wgmma_supports(const KascadePrefillShape& s, PrefillMode mode) {
  return mode != kSparse || s.heads / s.kvHeads >= 2;
}

cudaError_t launch_prefill_attention_wgmma(const KascadePrefillShape& s, PrefillMode mode, const PrefillArgs& a,
                                           cudaStream_t st) {
  const int g = s.heads / s.kvHeads;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&] {
    return KASCADE_HEADDIM_SWITCH(s.headDim, D, [&]() -> cudaError_t {
      switch (mode) {
        case kDense: return launch_wgmma_t<T, D, 1, kDense>(s, a, st);
        case kDenseStats: return launch_wgmma_t<T, D, 1, kDenseStats>(s, a, st);
        case kStats: return launch_wgmma_t<T, D, 1, kStats>(s, a, st);
        case kSparse:
          switch (g) {
            case 2: return launch_wgmma_t<T, D, 2, kSparse>(s, a, st);
            case 4: return launch_wgmma_t<T, D, 4, kSparse>(s, a, st);
            case 8: return launch_wgmma_t<T, D, 8, kSparse>(s, a, st);
            default: return cudaErrorInvalidValue;
          }
      }
      return cudaErrorInvalidValue;
    });
  });
}

}  // namespace pf
}  // namespace kascade
