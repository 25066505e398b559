// The anchors' exact Top-k of a pooled row, select v3 (after every pool since session 5): a radix select (11 + 11
// + 10 bits of the f32 pattern, then one compaction pass, ties at the k-th largest lowest index first) with
// 16-byte loads, two in flight per thread. Why: the first select (session 1's select_prefill_kernel) read one
// 4-byte score per thread and loop trip, so each warp had one 128-byte load in flight; with 64 warps per SM that
// was about 1.4 TB/s (ncu: 1.40 ms at 32k for four passes over 537 MB, 14 % L2 hits); this one takes 0.91 ms
// (call B of session 5). Session 3's two-pass select (select v2, pools v7 / v8) did not pay and is gone.
//
// select_prefill_v3_kernel: grid (tiles, pairs in this pass), 256 threads, one block per pooled row of s_t
// scores (>= 0, so their f32 bit patterns order like the values; s_t a multiple of 32; rows start 64-byte aligned
// in the packed layout), k = counts[t] of them selected. Writes the k indices in indices[pair, t, 0 .. k) (order
// free), -1 in the unused entries. Bytes: the row three times (two histogram passes, then one pass writing the
// scores above the k-th's 22-bit prefix and keeping those sharing it; pool v32's finish, the default since session
// 6's call B; four times on its fallback). Session 5's four-pass select (pool v19) is gone (session 7); session
// 6's call B also timed four 16-byte loads in flight per thread instead of two (pool v33: the anchor 298.2 against
// 296.5 ms at 128k): gone. Under pool v56 (the default) each row is read twice (select_pooled_row_max); under pool
// v60 (session 8's candidate) one and an eighth times (select_pooled_row_sampled, 512 threads per block).
#include <cstdlib>

#include "prefill_select.cuh"

namespace kascade {
namespace pf {

namespace {

constexpr int NT = 256;  // threads per block (pool v60's sampled select: 512)

// MODE 0: select_pooled_row (pool v32); 1 (BYMAX, pool v56): select_pooled_row_max under rowMax[pair, t] (written
// by the pool); 2 (pool v60): select_pooled_row_sampled under it (512 threads, 3584 candidates: 45 KB of shared
// memory, three blocks per SM). The block takes tile tileEnd - 1 - blockIdx.x (the longest rows first).
template <int MODE, int NTB>
__global__ void __launch_bounds__(NTB)
    select_prefill_v3_kernel(KascadePrefillShape s, const float* __restrict__ pooled, size_t perPair,
                             const int* __restrict__ counts, int kMax, int* __restrict__ indices, int pairBase,
                             const float* __restrict__ rowMax, int tileEnd) {
  constexpr int kCand = MODE == 2 ? kSelSampleCand : kSel3Cand;
  __shared__ unsigned hist[MODE > 0 ? kSelMaxBins : 2048];
  __shared__ unsigned wsum[NTB / 32];
  __shared__ unsigned res[2];
  __shared__ int cnt[2];
  __shared__ unsigned candV[kCand];
  __shared__ int candX[kCand];
  const int tiles = tiles_of(s);
  const int t = tileEnd - 1 - static_cast<int>(blockIdx.x);
  const int pair = pairBase + blockIdx.y;
  const int st = s.queryStart + t * kT;
  const int k = min(max(__ldg(counts + t), 0), min(st, kMax));
  int* out = indices + (static_cast<size_t>(pair) * tiles + t) * kMax;
  if (select_trivial_row(out, k, st, kMax, threadIdx.x, NTB)) return;
  const unsigned* u =
      reinterpret_cast<const unsigned*>(pooled + blockIdx.y * perPair + packed_offset(s.queryStart, t));
  const SelectShared sh{hist, wsum, res, cnt, candV, candX};
  if (MODE == 0) {
    select_pooled_row<NTB>(u, st, k, out, sh);
    return;
  }
  const unsigned mb = __float_as_uint(__ldg(rowMax + static_cast<size_t>(pair) * tiles + t));
  if (MODE == 1)
    select_pooled_row_max<NTB>(u, st, k, out, sh, mb);
  else
    select_pooled_row_sampled<NTB>(u, st, k, out, sh, mb);
}

}  // namespace

cudaError_t launch_select_v3(const KascadePrefillShape& s, const float* pooled, int pairBase, int pairs,
                             size_t perPair, const int* counts, int kMax, int* indices, const float* rowMax,
                             bool sampled, cudaStream_t st) {
  const int tiles = tiles_of(s);
  if (rowMax && sampled) {
    // Pool v60: rows of at least KASCADE_PREFILL_SAMPLE_FROM scores (read at every launch; default 16384, the parity
    // job sets 1024) on the sampled select, the shorter ones (tiles 0 .. t0 - 1) on v56's.
    const char* from = getenv("KASCADE_PREFILL_SAMPLE_FROM");
    const int rowsFrom = from && atoi(from) > 0 ? atoi(from) : 16384;
    const int t0 = select_sampled_first_tile(s.queryStart, tiles, rowsFrom);
    if (t0 < tiles)
      select_prefill_v3_kernel<2, 512><<<dim3(tiles - t0, pairs), 512, 0, st>>>(s, pooled, perPair, counts, kMax,
                                                                                 indices, pairBase, rowMax, tiles);
    if (t0 > 0)
      select_prefill_v3_kernel<1, NT>
          <<<dim3(t0, pairs), NT, 0, st>>>(s, pooled, perPair, counts, kMax, indices, pairBase, rowMax, t0);
    return cudaGetLastError();
  }
  const dim3 grid(tiles, pairs);
  if (rowMax)
    select_prefill_v3_kernel<1, NT>
        <<<grid, NT, 0, st>>>(s, pooled, perPair, counts, kMax, indices, pairBase, rowMax, tiles);
  else
    select_prefill_v3_kernel<0, NT>
        <<<grid, NT, 0, st>>>(s, pooled, perPair, counts, kMax, indices, pairBase, rowMax, tiles);
  return cudaGetLastError();
}

}  // namespace pf
}  // namespace kascade
