// The anchors' pooling pass, variant v12 (KASCADE_PREFILL_POOL=v12: head dim 128, g = 4, statistics from the
// attention pass; elsewhere as v5): the pool on dense v9's warp-specialised skeleton. Same output as v1-v8:
// S[j,t](x) = sum over the group's 4 x 32 query rows of exp2(l(x) - c_row), c_row = M_row + log2(L_row), x < s_t.
//
// pool_v12_kernel<T>: grid (tiles, pairs in this pass), the last (longest) tiles first; one CTA = a (sequence,
// KV head) pair's tile t; 384 threads = 3 warpgroups:
//   - warpgroup 0, the producer (setmaxnreg 40): one thread issues TMA tensor copies (128-byte swizzle) of the
//     tile's query rows once (row r = head 4 j + r / 32, query 32 t + r % 32: 4 heads x 2 boxes of 64 x 32) and
//     of K in 128-key steps (2 boxes of 64 x 128) into a 3-stage ring, full / empty mbarriers per stage.
//   - warpgroups 1 and 2, the consumers: keys 64 (w - 1) .. + 63 of each step, S^T = K Q^T (8 wgmma m64n128k16,
//     both operands in shared memory) so a key's 128 query rows sit in one thread quad; pool v3's overlap
//     inside a warpgroup (step i + 1's product issued, then step i's exponentials and row sums, then both
//     waited for), a stage released once both warpgroups' products on it are done.
// Shared memory: Q 32 KB + 3 x K 32 KB + 512 B of row constants + 1 KB alignment: 129.5 KB, one CTA per SM.
// Bytes: per CTA K rows 0 .. s_t - 1 (256 B each, L2 mostly: the pair's other tiles read them too), Q 32 KB,
// s_t floats out.
#include <type_traits>

#include "prefill_tma.cuh"
#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kP12Keys = 128;  // keys per step (64 per consumer warpgroup)
constexpr int kP12Rows = 128;  // the tile's 4 heads x 32 queries

struct P12Maps {
  CUtensorMap q;  // boxes of 64 x 32 rows
  CUtensorMap k;  // boxes of 64 x 128 rows
};

constexpr int kP12Stages = 3;

template <typename T>
constexpr size_t p12_smem_bytes() {
  return static_cast<size_t>(kP12Rows * 128 + kP12Stages * kP12Keys * 128) * sizeof(T) + 1024 + kP12Rows * 4 + 256;
}

// (Session 4's pool v13 and session 5's v14-v16, the same with a share of the exponentials on the FMA pipe and /
// or the two consumer warpgroups taking turns at the tensor cores, lost and are gone: pool v19,
// prefill_pool_v17.cu, runs four consumer warpgroups instead.)
template <typename T>
__global__ void __launch_bounds__(384, 1)
    pool_v12_kernel(const KascadePrefillShape s, const __grid_constant__ P12Maps maps, const float* __restrict__ stats,
                    float* __restrict__ pooled, int pairBase, size_t perPair, int denseLayout) {
  constexpr int D = 128;
  constexpr int STAGES = kP12Stages;
  constexpr int TILE = kP12Keys * D;
  constexpr int NA = 64;
  constexpr unsigned kTileBytes = TILE * sizeof(T);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem_base = smem_raw + ((1024 - (tma::smem_u32(smem_raw) & 1023)) & 1023);
  T* Qs = reinterpret_cast<T*>(smem_base);
  T* Ks = Qs + kP12Rows * D;
  float* Cs = reinterpret_cast<float*>(Ks + STAGES * TILE);
  uint64_t* bars = reinterpret_cast<uint64_t*>(Cs + kP12Rows);
  uint64_t* qFull = bars;
  uint64_t* full = bars + 1;
  uint64_t* empty = full + STAGES;

  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int tiles = tiles_of(s);
  const int t = tiles - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y, b = pair / G, j = pair % G;
  const int st = s.queryStart + t * kT;
  if (st == 0) return;
  const int steps = (st + kP12Keys - 1) / kP12Keys;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wgi = warp >> 2;

  if (tid == 0) {
    tma::mbar_init(qFull, 1);
    for (int x = 0; x < STAGES; ++x) {
      tma::mbar_init(full + x, 1);
      tma::mbar_init(empty + x, 256);
    }
    tma::mbar_init_fence();
  }
  __syncthreads();

  if (wgi == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (warp == 0 && lane == 0) {
      tma::mbar_expect_tx(qFull, kP12Rows * D * sizeof(T));
      for (int hh = 0; hh < 4; ++hh)
        for (int c = 0; c < 2; ++c)
          tma::copy_3d(Qs + c * kP12Rows * 64 + hh * kT * 64, &maps.q, c * 64, t * kT, b * H + j * 4 + hh, qFull);
      for (int i = 0; i < steps; ++i) {
        const int sg = i % STAGES;
        const unsigned u = static_cast<unsigned>(i / STAGES);
        if (i >= STAGES) tma::mbar_wait(empty + sg, (u - 1) & 1);
        tma::mbar_expect_tx(full + sg, kTileBytes);
        tma::copy_3d(Ks + sg * TILE, &maps.k, 0, i * kP12Keys, b * G + j, full + sg);
        tma::copy_3d(Ks + sg * TILE + kP12Keys * 64, &maps.k, 64, i * kP12Keys, b * G + j, full + sg);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int cw = wgi - 1, ctid = tid - 128, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  // Row constants c = M + log2(L) (+inf past the chunk: those rows add nothing).
  if (ctid < kP12Rows) {
    const int rr = ctid, hh = rr / kT, qi = t * kT + rr % kT;
    float c = INFINITY;
    if (qi < Q) {
      const size_t qrow = (static_cast<size_t>(b) * H + j * 4 + hh) * static_cast<size_t>(Q) + qi;
      c = stats[qrow * 2] + log2f(stats[qrow * 2 + 1]);
    }
    Cs[rr] = c;
  }
  asm volatile("bar.sync 1, 256;\n" ::: "memory");  // the consumers' Cs
  float* rowp = denseLayout ? pooled + (static_cast<size_t>(pair) * tiles + t) * n
                            : pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t);
  const float qscale = s.scale * kLog2e;

  auto issue = [&](float* acc, int i) {
    const int sg = i % STAGES;
    tma::mbar_spin(full + sg, static_cast<unsigned>(i / STAGES) & 1);
    const T* ks = Ks + sg * TILE + cw * 64 * 64;  // this warpgroup's 64 keys in each region
    pin<NA>(acc);
    fence();
#pragma unroll
    for (int kc = 0; kc < D / 16; ++kc)
      wgmma_m64n128k16_ss(acc, tma::k_desc(ks, kP12Keys, kc), tma::k_desc(Qs, kP12Rows, kc), kc > 0 ? 1 : 0, T{});
    commit();
    pin<NA>(acc);
  };
  auto pool_step = [&](const float* acc, int i) {
    float p0 = 0.f, p1 = 0.f;
#pragma unroll
    for (int nb = 0; nb < 16; ++nb) {
      const float2 c = *reinterpret_cast<const float2*>(Cs + nb * 8 + quad * 2);
      p0 += ex2f(fmaf(acc[nb * 4 + 0], qscale, -c.x)) + ex2f(fmaf(acc[nb * 4 + 1], qscale, -c.y));
      p1 += ex2f(fmaf(acc[nb * 4 + 2], qscale, -c.x)) + ex2f(fmaf(acc[nb * 4 + 3], qscale, -c.y));
    }
    p0 += __shfl_xor_sync(0xffffffffu, p0, 1);
    p0 += __shfl_xor_sync(0xffffffffu, p0, 2);
    p1 += __shfl_xor_sync(0xffffffffu, p1, 1);
    p1 += __shfl_xor_sync(0xffffffffu, p1, 2);
    const int x0 = i * kP12Keys + cw * 64 + wl * 16 + row, x1 = x0 + 8;
    if (quad == 0) {
      if (x0 < st) rowp[x0] = p0;
      if (x1 < st) rowp[x1] = p1;
    }
  };

  float accA[NA], accB[NA];
  tma::mbar_wait(qFull, 0);
  issue(accA, 0);
  wait0();
  pin<NA>(accA);
  tma::mbar_arrive(empty);
  // Iteration i: step i + 1's product goes out, step i's exponentials run under it, both are waited for
  // (nothing in flight over the loop's back edge), step i + 1's stage is released.
  auto body = [&](auto parity, int i) {
    float* cur = parity.value == 0 ? accA : accB;
    float* nxt = parity.value == 0 ? accB : accA;
    const bool more = i + 1 < steps;
    if (more) issue(nxt, i + 1);
    pool_step(cur, i);
    wait0();
    pin<NA>(nxt);
    if (more) tma::mbar_arrive(empty + (i + 1) % STAGES);
  };
#pragma unroll 1
  for (int i = 0; i < steps; i += 2) {
    body(std::integral_constant<int, 0>{}, i);
    if (i + 1 < steps) body(std::integral_constant<int, 1>{}, i + 1);
  }
}

template <typename T>
cudaError_t launch_p12_t(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                         float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, cudaStream_t st) {
  constexpr size_t smem = p12_smem_bytes<T>();
  static bool configured = false;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(pool_v12_kernel<T>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    configured = true;
  }
  P12Maps maps;
  const int n = s.queryStart + s.queries;
  if (!tma_encode(&maps.q, s.dtype, q, s.queries, s.queries, s.batch * s.heads, kT) ||
      !tma_encode(&maps.k, s.dtype, k, n, s.capacity, s.batch * s.kvHeads, kP12Keys))
    return cudaErrorNotSupported;
  pool_v12_kernel<T>
      <<<dim3(tiles_of(s), pairs), 384, smem, st>>>(s, maps, stats, pooled, pairBase, perPair, denseLayout);
  return cudaGetLastError();
}

}  // namespace

bool pool_v12_supports(const KascadePrefillShape& s) { return s.headDim == 128 && s.heads == 4 * s.kvHeads; }

cudaError_t launch_pool_v12(const KascadePrefillShape& s, const void* q, const void* k, const float* stats,
                            float* pooled, int pairBase, int pairs, size_t perPair, int denseLayout, cudaStream_t st) {
  if (!pool_v12_supports(s)) return cudaErrorInvalidValue;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    return launch_p12_t<T>(s, q, k, stats, pooled, pairBase, pairs, perPair, denseLayout, st);
  });
}

}  // namespace pf
}  // namespace kascade
