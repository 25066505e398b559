#!/usr/bin/env bash
# The issue-7 accuracy grid on the GPU host's CPU cores (a bg: job of session.sh, beside the GPU jobs).
# Here, first: `npx -y pnpm@12.4.2 run build && node scripts/bundle-bench.mjs --all`; carry apps/bench/dist/device.
# Every finished job goes to $JOB_OUT/journal.jsonl at once, so a run cut by its time limit keeps what it did;
# a later run here with --journal over this file (and others) finishes the grid and writes the results.
# Extra bench options: $ACC_ARGS (default: the issue's full grid). Workers: cores minus $ACC_SPARE_CORES (3).
set -u
workers=$(( $(nproc) - ${ACC_SPARE_CORES:-3} ))
[ "$workers" -lt 1 ] && workers=1
echo "accuracy: $workers workers, args: ${ACC_ARGS:-}"
# shellcheck disable=SC2086
node apps/bench/dist/device/cli.js accuracy --out "$JOB_OUT/accuracy.json" -- \
  --workers "$workers" --journal "$JOB_OUT/journal.jsonl" ${ACC_ARGS:-} 2>&1 | grep -v ' ok (\| x ' | tail -40
echo "journal lines: $(wc -l < "$JOB_OUT/journal.jsonl" 2>/dev/null || echo 0)"
