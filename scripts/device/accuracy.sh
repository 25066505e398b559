#!/usr/bin/env bash
# The issue-7 accuracy grid (TEST split) on the GPU host's CPU cores (a bg: job of session.sh, beside the GPU jobs).
# Here, first: `npx -y pnpm@12.4.2 run build && node scripts/bundle-bench.mjs --all`; carry apps/bench/dist/device.
# The journal starts as a copy of the committed one ($ACC_SEED_JOURNAL, default
# apps/bench/results/accuracy-journal.jsonl.gz; 'none' for an empty one): its rows of the plan-free
# policies (dense, oracle-topk, streaming) are reused, while kascade, its decode-only variant and
# all-heads-pooled are keyed by the plan's hash, so a new plan reruns exactly those cells (and the KL texts).
# No job starts after $ACC_TIME_LIMIT seconds (default 470), so the bench writes its results inside the
# job's limit (session.sh: JOB_LIMIT_accuracy=530); every finished job is in $JOB_OUT/journal.jsonl at once,
# and a later run here over it (and other journals) finishes the grid.
# Extra bench options: $ACC_ARGS (default: the issue's full grid). Workers: cores minus $ACC_SPARE_CORES (3).
set -u
workers=$(( $(nproc) - ${ACC_SPARE_CORES:-3} ))
[ "$workers" -lt 1 ] && workers=1
seed=${ACC_SEED_JOURNAL:-apps/bench/results/accuracy-journal.jsonl.gz}
if [ "$seed" != none ] && [ -f "$seed" ]; then
  # whole lines only: an unterminated last line would be glued to the first appended one
  zcat -f "$seed" > "$JOB_OUT/seed.jsonl"
  head -n "$(wc -l < "$JOB_OUT/seed.jsonl")" "$JOB_OUT/seed.jsonl" > "$JOB_OUT/journal.jsonl"
  rm -f "$JOB_OUT/seed.jsonl"
  echo "journal seeded from $seed: $(wc -l < "$JOB_OUT/journal.jsonl") lines"
fi
echo "accuracy: $workers workers, args: ${ACC_ARGS:-}"
# shellcheck disable=SC2086
node "${ACC_CLI:-apps/bench/dist/device/cli.js}" accuracy --out "$JOB_OUT/accuracy.json" -- \
  --workers "$workers" --journal "$JOB_OUT/journal.jsonl" --time-limit "${ACC_TIME_LIMIT:-470}" ${ACC_ARGS:-} 2>&1 \
  | grep -v ' ok (\| x ' | tail -40
echo "journal lines: $(wc -l < "$JOB_OUT/journal.jsonl" 2>/dev/null || echo 0)"
