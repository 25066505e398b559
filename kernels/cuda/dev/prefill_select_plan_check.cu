// Host-side check of the sampled select's plan (prefill_v9_plan.h: select_sample_count, select_sample_band,
// select_sampled_first_tile, the functions the select kernel and its launch call). No GPU needed.
// Usage: prefill_select_plan_check band K ST [K ST ...]  -> one JSON line per pair: {"ns", "rTop", "rBot"}
//        prefill_select_plan_check tiles QUERYSTART TILES ROWSFROM [...]  -> one JSON line per triple: {"t0"}
// packages/cuda/src/prefill-select-plan.test.ts checks the lines against what they must be.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../prefill_v9_plan.h"

using namespace kascade::pf;

int main(int argc, char** argv) {
  const bool band = argc > 1 && std::strcmp(argv[1], "band") == 0;
  const bool tiles = argc > 1 && std::strcmp(argv[1], "tiles") == 0;
  const int per = band ? 2 : 3;
  if ((!band && !tiles) || argc < 2 + per || (argc - 2) % per != 0) {
    std::fprintf(stderr, "usage: prefill_select_plan_check band K ST [...] | tiles QUERYSTART TILES ROWSFROM [...]\n");
    return 2;
  }
  for (int i = 2; i + per - 1 < argc; i += per) {
    if (band) {
      const int k = std::atoi(argv[i]), st = std::atoi(argv[i + 1]);
      const int ns = select_sample_count(st);
      const SelectSampleBand b = select_sample_band(k, st, ns);
      std::printf("{\"ns\":%d,\"rTop\":%d,\"rBot\":%d}\n", ns, b.rTop, b.rBot);
    } else {
      std::printf("{\"t0\":%d}\n",
                  select_sampled_first_tile(std::atoi(argv[i]), std::atoi(argv[i + 1]), std::atoi(argv[i + 2])));
    }
  }
  return 0;
}
