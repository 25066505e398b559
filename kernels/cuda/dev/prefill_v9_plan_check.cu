// Host-side check of the dense prefill v9 plan (prefill_v9_plan.h: prefill_v9_grid, prefill_v9_block,
// prefill_tensor_map_params, the functions the kernels and tma_encode call). No GPU needed.
// Usage: prefill_v9_plan_check BATCH HEADS KVHEADS QUERIES QUERYSTART CAPACITY [...]
// Prints one JSON line per case: the grid, every CTA's [queryBlock, head] in launch order (x fastest, then
// y, then z), and the tensor-map parameters of Q and K (boxes of 128 rows) and of the pools' Q tiles and 64-key K
// steps. packages/cuda/src/prefill-plan.test.ts compares it with
// the TypeScript twin (packages/cuda/src/prefill-plan.ts).
#include <cstdio>
#include <cstdlib>

#include "../prefill_v9_plan.h"

using namespace kascade::pf;

static void print_map(const char* name, const PrefillTensorMapParams& p) {
  std::printf("\"%s\":{\"dims\":[%llu,%llu,%llu],\"strides\":[%llu,%llu],\"box\":[%u,%u,%u]}", name,
              static_cast<unsigned long long>(p.dims[0]), static_cast<unsigned long long>(p.dims[1]),
              static_cast<unsigned long long>(p.dims[2]), static_cast<unsigned long long>(p.strides[0]),
              static_cast<unsigned long long>(p.strides[1]), p.box[0], p.box[1], p.box[2]);
}

int main(int argc, char** argv) {
  if (argc < 7 || (argc - 1) % 6 != 0) {
    std::fprintf(stderr, "usage: prefill_v9_plan_check BATCH HEADS KVHEADS QUERIES QUERYSTART CAPACITY [...]\n");
    return 2;
  }
  for (int i = 1; i + 5 < argc; i += 6) {
    KascadePrefillShape s{};
    s.batch = std::atoi(argv[i]);
    s.heads = std::atoi(argv[i + 1]);
    s.kvHeads = std::atoi(argv[i + 2]);
    s.headDim = 128;
    s.queries = std::atoi(argv[i + 3]);
    s.queryStart = std::atoi(argv[i + 4]);
    s.capacity = std::atoi(argv[i + 5]);
    s.tileSize = KASCADE_PREFILL_TILE;
    const PrefillGrid g = prefill_v9_grid(s);
    std::printf("{\"grid\":[%u,%u,%u],\"blocks\":[", g.x, g.y, g.z);
    bool first = true;
    for (unsigned z = 0; z < g.z; ++z)
      for (unsigned y = 0; y < g.y; ++y)
        for (unsigned x = 0; x < g.x; ++x) {
          const PrefillV9Block b = prefill_v9_block(s, static_cast<int>(x), static_cast<int>(y));
          std::printf(first ? "[%d,%d]" : ",[%d,%d]", b.queryBlock, b.head);
          first = false;
        }
    std::printf("],");
    const int n = s.queryStart + s.queries;
    print_map("q", prefill_tensor_map_params(s.queries, s.queries, s.batch * s.heads));
    std::printf(",");
    print_map("k", prefill_tensor_map_params(n, s.capacity, s.batch * s.kvHeads));
    std::printf(",");
    // The pools' maps (prefill_tma.cu): a query tile's rows (boxes of 32), K in 64-key steps.
    print_map("qTile", prefill_tensor_map_params(s.queries, s.queries, s.batch * s.heads, KASCADE_PREFILL_TILE));
    std::printf(",");
    print_map("k64", prefill_tensor_map_params(n, s.capacity, s.batch * s.kvHeads, 64));
    std::printf("}\n");
  }
  return 0;
}
