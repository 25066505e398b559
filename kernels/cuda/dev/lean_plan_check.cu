// Host-side check of the lean (stream-K) work partition (decode_attention.cuh: lean_plan,
// lean_tile_begin, lean_segment), the functions the kernel itself calls. No GPU needed.
// Usage: lean_plan_check ROWS LISTLEN CTAS [ROWS LISTLEN CTAS ...]
//        lean_plan_check --lite|--ws ROWS LISTLEN CTAS [...] (grain_split_count, "splits chunk" per line)
// Prints one JSON line per case: the plan and, per CTA, its segments
// [row, begin, end, slot, nslots, rowLast]. packages/cuda/src/lean.test.ts compares it with the
// TypeScript twin (packages/cuda/src/lean.ts).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../decode_attention.cuh"

using namespace kascade;

int main(int argc, char** argv) {
  // lean_plan_check --lite ROWS LISTLEN CTAS [...]: lite_split_count per triple, "splits chunk" per line;
  // --ws: the same with grain_split_count at the warp-specialised gather's 16-key groups (bit 32768).
  const bool ws = argc >= 2 && std::strcmp(argv[1], "--ws") == 0;
  if (argc >= 2 && (ws || std::strcmp(argv[1], "--lite") == 0)) {
    for (int i = 2; i + 2 < argc; i += 3) {
      int chunk = 0;
      const long long rows = std::atoll(argv[i]), ctas = std::atoll(argv[i + 2]);
      const int listLen = std::atoi(argv[i + 1]);
      const int splits = ws ? grain_split_count(rows, listLen, ctas, kWsGroup, &chunk)
                            : lite_split_count(rows, listLen, ctas, &chunk);
      std::printf("%d %d\n", splits, chunk);
    }
    return 0;
  }
  if (argc < 4 || (argc - 1) % 3 != 0) {
    std::fprintf(stderr, "usage: lean_plan_check ROWS LISTLEN CTAS [...]\n");
    return 2;
  }
  for (int i = 1; i + 2 < argc; i += 3) {
    const long long rows = std::atoll(argv[i]);
    const int listLen = std::atoi(argv[i + 1]), want = std::atoi(argv[i + 2]);
    const LeanPlan p = lean_plan(rows, listLen, want);
    std::printf("{\"work\":%lld,\"tiles\":%d,\"ctas\":%d,\"slots\":%d,\"segments\":[", p.work, p.tiles, p.ctas,
                p.slots);
    for (int c = 0; c < p.ctas; ++c) {
      std::printf(c ? ",[" : "[");
      long long t = lean_tile_begin(c, p.work, p.ctas);
      const long long tEnd = lean_tile_begin(c + 1LL, p.work, p.ctas);
      bool first = true;
      while (t < tEnd) {
        const LeanSegment g = lean_segment(c, t, tEnd, p.work, p.tiles, p.ctas, listLen);
        std::printf("%s[%lld,%d,%d,%d,%d,%d]", first ? "" : ",", g.row, g.begin, g.end, g.slot, g.nslots,
                    g.rowLast ? 1 : 0);
        first = false;
        t = g.nextTile;
      }
      std::printf("]");
    }
    std::printf("]}\n");
  }
  return 0;
}
