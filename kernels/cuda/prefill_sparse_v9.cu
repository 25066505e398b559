// Prefill sparse tile attention, variant v12 (KASCADE_PREFILL_SPARSE=v12, the default: the anchors' sparse pass and
// reuse at head dim 128 and g = 4; elsewhere v1; session 5's v17, this kernel with a 2-stage ring, is gone): dense v9's warp-specialised structure (prefill_dense_v9.cu) over a
// gathered key list. The rows are arbitrary positions, which a TMA tensor copy cannot gather, so a producer
// warpgroup gathers them with 16-byte cp.async straight into v8's 128-byte swizzled layout.
//
// Layout: q [batch, heads, queries, 128], k / v [batch, kvHeads, capacity, 128] (bf16 or f16), out like q;
// counts [tiles], indices [batch, selKvHeads, tiles, kMax] int32 (KV head j reads row headMap[j]).
//
// Kernel prefill_sparse_v9_kernel<T, STAGES>: grid (tiles, kvHeads, batch), the last (longest-list) tiles
// first; one CTA = a tile's 32 queries of the group's 4 query heads (row r: head 4 j + r / 32, query
// 32 t + r % 32), over v8's key list (the selection's counts[t] entries, entries outside 0 .. s_t - 1 masked,
// then the diagonal tile, causal). 384 threads = 3 warpgroups:
//   - warpgroup 0, the producer (setmaxnreg 56): Q once, then per 128-key step thread r reads list entry
//     128 i + r's position into a shared slot (read by the consumers' masks too), and after a producer barrier
//     the warpgroup gathers the step's K and V rows by 16-byte cp.async into the step's ring stage, 16 lanes
//     per 256-byte row (whole 32-byte sectors); cp.async.mbarrier.arrive.noinc on the stage's "full"
//     barrier (it completes when the thread's copies have landed) plus an ordinary arrive (releasing the
//     position stores): 256 arrivals. A stage is reused once the 256 consumer threads have released it. The
//     consumers fence the generic-proxy copies to the async proxy (fence.proxy.async) after each wait.
//   - warpgroups 1 and 2, the consumers (setmaxnreg 224): heads 2 (w - 1), 2 (w - 1) + 1, dense v9's loop
//     (S(i) issued, then P(i - 1) V(i - 1); the masked softmax of S(i) under P V; the stage of step i - 1
//     released once its P V is done). Masks only on steps with a diagonal, past-the-list or invalid entry.
// Shared memory: Q 32 KB + STAGES x (K + V) 64 KB + positions + 1 KB alignment: 3 stages (sparse v12: a step more
// of the gather's latency hidden than the 2 stages, 162 KB, of sessions 4-5's v9 / v17) 226.8 KB of the 227 KB.
// Bytes: Q 32 KB, the list's K and V rows (256 B each, L2 mostly), out 32 KB per CTA.
#include <cstdlib>
#include <type_traits>

#include "prefill_tma.cuh"
#include "prefill_wgmma.cuh"

namespace kascade {
namespace pf {

namespace {

using namespace wg;

constexpr int kS9Keys = 128;
constexpr int kS9Rows = 128;
constexpr int kS9Threads = 384;
constexpr int kS9Producers = 128;
constexpr int kS9Consumers = 256;

template <typename T, int STAGES>
constexpr size_t s9_smem_bytes() {
  return static_cast<size_t>(kS9Rows * 128 + 2 * STAGES * kS9Keys * 128) * sizeof(T) + 1024 +
         STAGES * (kS9Keys + 4) * sizeof(int) + 256;
}

// PERSIST (sparse v61 with PREFETCH, the default since session 8's call B; alone it was call A's v58): one CTA per SM
// walks the work items (the grid's (tile, KV head, sequence) in its order) w = blockIdx.x, + gridDim.x, ..; the ring's
// stages and phases run on across items, so the producer gathers the next item's first step while the consumers finish
// the current one, and loads its Q once the consumers' last Q K^T is done (barrier qEmpty), under their last softmax, P
// V and output store. Without it (sparse v12) a CTA's first gather, Q load and last store are exposed: about 5 us of a
// CTA's 33 us at 32k and 115 us at 128k (ncu, sessions 4 and 7); call A of session 8: 1.95 against 2.12 ms at 32k
// (ncu). PREFETCH (sparse v61, with PERSIST): the producer loads the next step's list entries before gathering this
// step's rows, so the entries' L2 latency is off its per-step path (call B: 1.82 against v58's 1.96 ms at 32k; call C
// at 128k, ncu, the anchor's sparse launches at the same places in the bench pass: 28.7 / 28.7 / 31.1 against v12's
// 31.7 / 31.8 / 34.0 ms). Session 8 also timed v58 (PERSIST alone; gone) and v62 (v61 with every odd round of the walk
// reversed: within the run's spread of v61 at 128k, reuse 0.25 against 0.21 ms at 8k; gone). A version taking the items
// from a global counter made ptxas serialise the consumers' wgmma (C7512) and was never run. PM: 0 = v12, 2 = v61
// (PERSIST + PREFETCH; the default since session 8's call B).
template <typename T, int STAGES, int PM>
__global__ void __launch_bounds__(kS9Threads, 1)
    prefill_sparse_v9_kernel(const KascadePrefillShape s, const PrefillArgs a) {
  constexpr bool PERSIST = PM >= 1, PREFETCH = PM >= 2;
  constexpr int D = 128;
  constexpr int TILE = kS9Keys * D;
  constexpr int NA = 64;
  constexpr int GS = 4;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  unsigned char* smem_base = smem_raw + ((1024 - (tma::smem_u32(smem_raw) & 1023)) & 1023);
  T* Qs = reinterpret_cast<T*>(smem_base);
  T* Ks = Qs + kS9Rows * D;
  T* Vs = Ks + STAGES * TILE;
  int* posS = reinterpret_cast<int*>(Vs + STAGES * TILE);  // [stage][128] key positions (-1: masked)
  int* badS = posS + STAGES * kS9Keys;                      // [stage][4] "this producer warp's entries need a mask"
  uint64_t* bars = reinterpret_cast<uint64_t*>(badS + STAGES * 4 + ((STAGES * 4) & 1));
  uint64_t* qFull = bars;
  uint64_t* full = bars + 1;
  uint64_t* empty = full + STAGES;
  uint64_t* qEmpty = empty + STAGES;  // PERSIST: the consumers are done with Q

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wgi = warp >> 2;
  const int H = s.heads, G = s.kvHeads, Q = s.queries;
  const int n = s.queryStart + Q;
  const int tiles = tiles_of(s);
  const int items = tiles * G * s.batch;
  // The CTA's iter-th work item (past the end: >= items).
  const auto item_at = [&](int iter) {
    if (!PERSIST) return iter == 0 ? static_cast<int>(blockIdx.x + tiles * (blockIdx.y + G * blockIdx.z)) : items;
    const int c = static_cast<int>(blockIdx.x), nc = static_cast<int>(gridDim.x);
    return iter * nc + c;
  };
  // Work item w: tile t = tiles - 1 - w % tiles (the longest lists first), KV head j, sequence b.
  struct Item {
    int t, j, b, tileStart, cnt, listLen, steps;
  };
  const auto item_of = [&](int w) {
    Item it;
    it.t = tiles - 1 - w % tiles;
    it.j = (w / tiles) % G;
    it.b = w / (tiles * G);
    it.tileStart = s.queryStart + it.t * kT;
    it.cnt = min(max(__ldg(a.counts + it.t), 0), a.kMax);
    it.listLen = it.cnt + min(kT, n - it.tileStart);
    it.steps = (it.listLen + kS9Keys - 1) / kS9Keys;
    return it;
  };

  if (tid == 0) {
    tma::mbar_init(qFull, kS9Producers);
    for (int x = 0; x < STAGES; ++x) {
      tma::mbar_init(full + x, 2 * kS9Producers);
      tma::mbar_init(empty + x, kS9Consumers);
    }
    if (PERSIST) tma::mbar_init(qEmpty, kS9Consumers);
    tma::mbar_fence_init();
  }
  __syncthreads();

  if (wgi == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\n" ::: "memory");
    int gBase = 0;  // ring steps of the earlier items
    for (int iter = 0;; ++iter) {
      const int w = item_at(iter);
      if (w >= items) break;
      const Item it = item_of(w);
      const int t = it.t, j = it.j, b = it.b, tileStart = it.tileStart, cnt = it.cnt, listLen = it.listLen;
      const size_t kvBase = (static_cast<size_t>(b) * G + j) * static_cast<size_t>(s.capacity) * D;
      const T* kg = static_cast<const T*>(a.k) + kvBase;
      const T* vg = static_cast<const T*>(a.v) + kvBase;
      const int* idx = a.indices + ((static_cast<size_t>(b) * a.selKvHeads + a.headMap[j]) * tiles + t) * a.kMax;
      // Q: thread r copies row r (16 chunks), zeros past the chunk's end (PERSIST: after the item's first gather,
      // once the consumers are done with the previous item's Q).
      const auto load_q = [&]() {
        if (PERSIST && iter > 0) tma::mbar_wait(qEmpty, static_cast<unsigned>(iter - 1) & 1);
        const int r = tid;
        const int qi = t * kT + (r & (kT - 1));
        const bool valid = qi < Q;
        const size_t qrow =
            (static_cast<size_t>(b) * H + j * GS + (r >> 5)) * static_cast<size_t>(Q) + (valid ? qi : 0);
        const T* src = static_cast<const T*>(a.q) + qrow * D;
#pragma unroll
        for (int cc = 0; cc < 16; ++cc) cp_async16(Qs + tma::sw_offset(kS9Rows, r, cc), src + cc * 8, valid ? 16 : 0);
        tma::mbar_arrive_copies(qFull);
      };
      if (!PERSIST) load_q();
      // PREFETCH: step i + 1's list entry is loaded while step i is gathered.
      const auto entry = [&](int i) { return i * kS9Keys + tid < cnt ? __ldg(idx + i * kS9Keys + tid) : 0; };
      int xNext = PREFETCH ? entry(0) : 0;
      for (int i = 0; i < it.steps; ++i) {
        const int g = gBase + i;
        const int st = g % STAGES;
        const unsigned u = static_cast<unsigned>(g / STAGES);
        const int li = i * kS9Keys + tid;
        int p = -1;
        const int xe = PREFETCH ? xNext : 0;
        if (PREFETCH && i + 1 < it.steps) xNext = entry(i + 1);
        if (li < cnt) {
          const int x = PREFETCH ? xe : __ldg(idx + li);
          p = (x >= 0 && x < tileStart) ? x : -1;
        } else if (li < listLen) {
          p = tileStart + (li - cnt);
        }
        const bool bad = __any_sync(0xffffffffu, p < 0 || li >= cnt);
        if (g >= STAGES) tma::mbar_wait(empty + st, (u - 1) & 1);
        posS[st * kS9Keys + tid] = p;
        if (lane == 0) badS[st * 4 + warp] = bad ? 1 : 0;
        asm volatile("bar.sync 1, 128;\n" ::: "memory");  // the producers' positions, for each other
        // Copy c = 128 it + tid is chunk c % 16 of row c / 16: 16 lanes cover a row's 256 bytes (whole sectors).
        T* kd = Ks + st * TILE;
        T* vd = Vs + st * TILE;
        const int* ps = posS + st * kS9Keys;
#pragma unroll 4
        for (int rr = 0; rr < 16; ++rr) {
          const int r = rr * 8 + (tid >> 4), cc = tid & 15;
          const int pr = ps[r];
          const size_t off = static_cast<size_t>(pr < 0 ? 0 : pr) * D + cc * 8;
          cp_async16(kd + tma::sw_offset(kS9Keys, r, cc), kg + off, pr < 0 ? 0 : 16);
          cp_async16(vd + tma::sw_offset(kS9Keys, r, cc), vg + off, pr < 0 ? 0 : 16);
        }
        tma::mbar_arrive_copies(full + st);
        tma::mbar_arrive(full + st);  // releases the position stores
        if (PERSIST && i == 0) load_q();
      }
      gBase += it.steps;
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n" ::: "memory");
  const int cw = wgi - 1, wl = warp & 3;
  const int row = lane >> 2, quad = lane & 3;
  const int r0 = cw * 64 + wl * 16 + row;  // rows r0, r0 + 8 (the same head)
  const float qscale = s.scale * kLog2e;
  const T* qw = Qs + cw * 64 * 64;
  int gBase = 0;
  for (int iter = 0;; ++iter) {
    const int w = item_at(iter);
    if (w >= items) break;
    const Item it = item_of(w);
    const int steps = it.steps;
    const int qi0 = it.t * kT + (r0 & (kT - 1)), qi1 = qi0 + 8;
    const int pos0 = it.tileStart + (r0 & (kT - 1)), pos1 = pos0 + 8;
    const size_t qBase = (static_cast<size_t>(it.b) * H + it.j * GS + (r0 >> 5)) * static_cast<size_t>(Q);

    auto issue_s = [&](float* sacc, int i) {
      const int st = (gBase + i) % STAGES;
      tma::mbar_spin(full + st, static_cast<unsigned>((gBase + i) / STAGES) & 1);
      fence_proxy_async();  // the gathered rows were written by cp.async (generic proxy); wgmma reads async
      const T* ks = Ks + st * TILE;
      issue_ab(sacc, qw, kS9Rows, ks, kS9Keys);
    };
    auto issue_pv = [&](float* o, const uint32_t (*pa)[4], int i) {
      const T* vs = Vs + ((gBase + i) % STAGES) * TILE;
      issue_pv_rs(o, pa, vs, kS9Keys);
    };
    auto mask_step = [&](float* sacc, int i) {
      const int st = (gBase + i) % STAGES;
      if (badS[st * 4] | badS[st * 4 + 1] | badS[st * 4 + 2] | badS[st * 4 + 3]) {
        const int* ps = posS + st * kS9Keys;
#pragma unroll
        for (int nb = 0; nb < 16; ++nb)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int p = ps[nb * 8 + quad * 2 + e];
            if (p < 0 || p > pos0) sacc[nb * 4 + e] = -INFINITY;
            if (p < 0 || p > pos1) sacc[nb * 4 + 2 + e] = -INFINITY;
          }
      }
    };

    float o[NA], sacc[NA];
    uint32_t pa[8][4];
#pragma unroll
    for (int x = 0; x < NA; ++x) o[x] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    float al0 = 1.f, al1 = 1.f;
    auto softmax = [&]() { online_softmax(sacc, qscale, m0, m1, l0, l1, al0, al1); };
    auto rescale_pack = [&]() { pf::wg::rescale_pack<T>(o, sacc, al0, al1, pa); };

    tma::mbar_wait(qFull, static_cast<unsigned>(iter) & 1);  // (issue_s's proxy fence covers Q too)
    // After S(i): with PERSIST the item's last Q K^T releases Q; after P(i) V(i): step i's K, V and positions are
    // done with (the item's last step's too, with PERSIST: the ring runs on).
    attention_steps(
        steps, sacc, o, pa, issue_s, issue_pv,
        [&](int i) {
          if (PERSIST && i == steps - 1) tma::mbar_arrive(qEmpty);
        },
        mask_step, softmax, rescale_pack,
        [&](int i, bool last) {
          if (PERSIST || !last) tma::mbar_arrive(empty + (gBase + i) % STAGES);
        });

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    store_o_rows(static_cast<T*>(a.out), o, l0, l1, qBase, qi0, qi1, Q, quad);
    gBase += steps;
  }
}

template <typename T, int STAGES, int PM>
cudaError_t launch_s9_t(const KascadePrefillShape& s, const PrefillArgs& a, cudaStream_t st) {
  constexpr bool PERSIST = PM >= 1;
  constexpr size_t smem = s9_smem_bytes<T, STAGES>();
  static bool configured = false;
  static int sms = 0;
  if (!configured) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_sparse_v9_kernel<T, STAGES, PM>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    int dev = 0;
    if (PERSIST && (cudaGetDevice(&dev) != cudaSuccess ||
                    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1))
      return cudaErrorUnknown;
    configured = true;
  }
  const int items = tiles_of(s) * s.kvHeads * s.batch;
  // KASCADE_PREFILL_SPARSE_CTAS (read at every launch) caps the persistent grid: the parity job sets it low, so
  // its small chunks run several items per CTA too.
  int ctas = sms;
  if (PERSIST) {
    const char* cap = getenv("KASCADE_PREFILL_SPARSE_CTAS");
    const int c = cap ? atoi(cap) : 0;
    if (c > 0 && c < ctas) ctas = c;
  }
  const dim3 grid = PERSIST ? dim3(min(ctas, items)) : dim3(tiles_of(s), s.kvHeads, s.batch);
  prefill_sparse_v9_kernel<T, STAGES, PM><<<grid, kS9Threads, smem, st>>>(s, a);
  return cudaGetLastError();
}

}  // namespace

bool prefill_sparse_v9_supports(const KascadePrefillShape& s) { return s.headDim == 128 && s.heads == 4 * s.kvHeads; }

cudaError_t launch_prefill_sparse_v9(const KascadePrefillShape& s, const PrefillArgs& a, int variant,
                                     cudaStream_t st) {
  if (!prefill_sparse_v9_supports(s)) return cudaErrorInvalidValue;
  return KASCADE_DTYPE_SWITCH(s.dtype, T, [&]() -> cudaError_t {
    if (variant == 61) return launch_s9_t<T, 3, 2>(s, a, st);
    return launch_s9_t<T, 3, 0>(s, a, st);
  });
}

}  // namespace pf
}  // namespace kascade
