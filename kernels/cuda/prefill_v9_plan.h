// Host-side plan of the dense prefill variants v9 / v10 (prefill_dense_v9.cu), kept free of device code so a
// host program (dev/prefill_v9_plan_check.cu) can print it for packages/cuda/src/prefill-plan.test.ts to
// compare with its TypeScript twin (prefillDenseV9Plan in packages/cuda/src/prefill.ts).
//   - The tile order: grid (g x ceil(queries / 128), kvHeads, batch); block x = the query block qb (the last,
//     heaviest, first) times g plus the head within the group, so the g heads that read the same K/V tiles
//     are consecutive CTAs.
//   - The TMA tensor maps: a 3D view [planes][rows][128] of 16-bit elements (row stride 256 B, plane
//     stride planeRows rows), boxes of 64 elements (128 B, the 128-byte swizzle's span) x 128 rows x 1.
#pragma once
#include <cmath>
#include <cstdint>

#include "prefill_api.h"

#if defined(__CUDACC__)
#define KASCADE_PLAN_FN __host__ __device__ inline
#else
#define KASCADE_PLAN_FN inline
#endif

namespace kascade {
namespace pf {

constexpr int kV9BlockRows = 128;  // query rows per CTA (and keys per step)

struct PrefillGrid {
  unsigned x, y, z;
};
struct PrefillV9Block {
  int queryBlock;  // query rows 128 qb .. 128 qb + 127
  int head;        // query head
};
struct PrefillTensorMapParams {
  uint64_t dims[3];     // elements: head dim, rows, planes
  uint64_t strides[2];  // bytes: between rows, between planes
  uint32_t box[3];
};

KASCADE_PLAN_FN int prefill_v9_query_blocks(const KascadePrefillShape& s) {
  return (s.queries + kV9BlockRows - 1) / kV9BlockRows;
}

KASCADE_PLAN_FN PrefillGrid prefill_v9_grid(const KascadePrefillShape& s) {
  const int g = s.heads / s.kvHeads;
  return PrefillGrid{static_cast<unsigned>(prefill_v9_query_blocks(s) * g), static_cast<unsigned>(s.kvHeads),
                     static_cast<unsigned>(s.batch)};
}

// What CTA (bx, by) computes (by = the KV head j).
KASCADE_PLAN_FN PrefillV9Block prefill_v9_block(const KascadePrefillShape& s, int bx, int by) {
  const int g = s.heads / s.kvHeads;
  const int nqb = prefill_v9_query_blocks(s);
  return PrefillV9Block{nqb - 1 - bx / g, by * g + bx % g};
}

// headDim 128, 2-byte elements; boxes of 64 elements x boxRows rows (dense v9: 128; the pools' and the statistics
// pass's maps in prefill_tma.cu: 32, 64 or 128).
inline PrefillTensorMapParams prefill_tensor_map_params(int rows, int planeRows, int planes,
                                                        int boxRows = kV9BlockRows) {
  PrefillTensorMapParams p{};
  p.dims[0] = 128;
  p.dims[1] = static_cast<uint64_t>(rows);
  p.dims[2] = static_cast<uint64_t>(planes);
  p.strides[0] = 128 * 2;
  p.strides[1] = static_cast<uint64_t>(planeRows) * 128 * 2;
  p.box[0] = 64;
  p.box[1] = static_cast<uint32_t>(boxRows);
  p.box[2] = 1;
  return p;
}

// The sampled select's plan (pool v60's select_pooled_row_sampled in prefill_select.cuh, launched by
// prefill_select_v3.cu), host and device, checked on the host by dev/prefill_select_plan_check.cu and
// packages/cuda/src/prefill-select-plan.test.ts:
//   - the sample of a row of st scores (st a multiple of 32): the first 128 scores of every 1024, ns of them;
//   - the band of sample ranks [rTop, rBot] around the k-th's expected rank among them, ks = k ns / st, by 3.5
//     standard deviations of that rank (binomial, p = k / st) + 8 on each side (rTop < 1: the band reaches the
//     row's top; rBot at most ns);
//   - the rows that take it: those of at least rowsFrom scores, tiles t0 .. tiles - 1 (s_t = queryStart + 32 t).
constexpr int kSelSampleRun = 128;     // sampled scores at the start of every run
constexpr int kSelSampleEvery = 1024;  // scores per run

KASCADE_PLAN_FN int select_sample_count(int st) {
  const int rest = st % kSelSampleEvery;
  return st / kSelSampleEvery * kSelSampleRun + (rest < kSelSampleRun ? rest : kSelSampleRun);
}

struct SelectSampleBand {
  int rTop;  // the band's highest sample rank (< 1: from the top)
  int rBot;  // its lowest
};

KASCADE_PLAN_FN SelectSampleBand select_sample_band(int k, int st, int ns) {
  const float ks = static_cast<float>(k) * static_cast<float>(ns) / static_cast<float>(st);
  const float d = 3.5f * sqrtf(ks * (1.f - static_cast<float>(k) / static_cast<float>(st))) + 8.f;
  const int bot = static_cast<int>(ceilf(ks + d));
  return SelectSampleBand{static_cast<int>(floorf(ks - d)), bot < ns ? bot : ns};
}

KASCADE_PLAN_FN int select_sampled_first_tile(int queryStart, int tiles, int rowsFrom) {
  const int t0 = (rowsFrom - queryStart + KASCADE_PREFILL_TILE - 1) / KASCADE_PREFILL_TILE;
  return t0 < 0 ? 0 : t0 > tiles ? tiles : t0;
}

}  // namespace pf
}  // namespace kascade
