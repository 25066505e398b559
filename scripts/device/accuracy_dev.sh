#!/usr/bin/env bash
# Job name accuracy_dev (an underscore: session.sh reads its limit from JOB_LIMIT_accuracy_dev).
# Choosing the demo model's Kascade plan on the DEV split (issue 7): dense and kascade under each
# candidate plan on the 4k dev instances, on the GPU host's CPU cores (a bg: job of session.sh).
# Here, first: `npx -y pnpm@12.4.2 run build && node scripts/bundle-bench.mjs --all`; carry apps/bench/dist/device.
# Candidates: packages/demo-model/training/logs/plans/*.json (label = file name), or $ACC_PLANS
# (label=file,...). Jobs go round-robin over the cells, vt and kv first, and no job starts after
# $ACC_TIME_LIMIT seconds (default 470), so the bench writes its own results inside the job's limit;
# every finished job is also in $JOB_OUT/journal.jsonl. Workers: cores minus $ACC_SPARE_CORES (3).
set -u
workers=$(( $(nproc) - ${ACC_SPARE_CORES:-3} ))
[ "$workers" -lt 1 ] && workers=1
plans=${ACC_PLANS:-}
if [ -z "$plans" ]; then
  for f in packages/demo-model/training/logs/plans/*.json; do
    plans="${plans:+$plans,}$(basename "$f" .json)=$f"
  done
fi
# The journal starts from the committed dev-selection journal ($ACC_SEED_JOURNAL; 'none' for an empty
# one), whole lines only, so finished jobs are not run again.
seed=${ACC_SEED_JOURNAL:-packages/demo-model/training/logs/dev-selection/journal.jsonl}
if [ "$seed" != none ] && [ -f "$seed" ]; then
  zcat -f "$seed" > "$JOB_OUT/seed.jsonl"
  head -n "$(wc -l < "$JOB_OUT/seed.jsonl")" "$JOB_OUT/seed.jsonl" > "$JOB_OUT/journal.jsonl"
  rm -f "$JOB_OUT/seed.jsonl"
  echo "journal seeded from $seed: $(wc -l < "$JOB_OUT/journal.jsonl") lines"
fi
echo "accuracy-dev: $workers workers, plans: $plans"
node "${ACC_CLI:-apps/bench/dist/device/cli.js}" accuracy --out "$JOB_OUT/accuracy-dev.json" -- \
  --split dev --context 4096 --instances "${ACC_INSTANCES:-20}" --grids main --policies dense,kascade \
  --families vt,kv,niah_single,niah_multikey,niah_multivalue,niah_multiquery --kl-texts 0 \
  --order round-robin --time-limit "${ACC_TIME_LIMIT:-470}" --plans "$plans" \
  --workers "$workers" --journal "$JOB_OUT/journal.jsonl" 2>&1 | grep -v ' ok (\| x ' | tail -40
echo "journal lines: $(wc -l < "$JOB_OUT/journal.jsonl" 2>/dev/null || echo 0)"
