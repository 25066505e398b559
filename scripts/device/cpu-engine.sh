#!/usr/bin/env bash
# The CPU engine bench (`kascade-bench cpu-engine`: the bundled-size model with random weights, dense vs Kascade
# decode and prefill on the engine's fast attention ops, one thread) on the GPU host's CPU, as a bg: job of
# session.sh beside GPU-bound jobs (it uses one core of sixteen; the long prefill kernels are not disturbed by it).
# Built here first: node packages/cuda/scripts/bundle-device.mjs --core-from-git (bench-cli.mjs carries every bench).
# Leaves in $JOB_OUT: cpu-engine.json (+ .md/.svg from `kascade-bench render` where the bundle can render) with the
# defaults, and lscpu.txt (the host CPU the figures are for). CPU_ENGINE_VARIANTS (space-separated `chunk:touch`
# pairs; default "128:0 64:1 256:1 128:1", empty for none) adds one run per pair after it, with
# CPU_ENGINE_KEY_CHUNK / CPU_ENGINE_TOUCH set (the attention workspace's keys per chunk, and whether scattered rows
# are loaded once before their copy), as cpu-engine-c<chunk>-t<touch>.json: about 20 s each on the H200 host's Xeon
# (the last pair repeats the defaults: the spread between two runs of the same code in one call).
set -u
: "${JOB_OUT:?JOB_OUT must name the output folder}"
lscpu > "$JOB_OUT/lscpu.txt" 2>&1
cli=packages/cuda/dist-device/bench-cli.mjs
node $cli cpu-engine --out "$JOB_OUT/cpu-engine.json" ${CPU_ENGINE_ARGS:-} 2>&1 | tail -40
for pair in ${CPU_ENGINE_VARIANTS-128:0 64:1 256:1 128:1}; do
  chunk=${pair%%:*} touch=${pair##*:}
  echo "== variant keyChunk=$chunk touchScattered=$touch"
  CPU_ENGINE_KEY_CHUNK=$chunk CPU_ENGINE_TOUCH=$touch node $cli cpu-engine \
    --out "$JOB_OUT/cpu-engine-c$chunk-t$touch.json" ${CPU_ENGINE_ARGS:-} 2>&1 | tail -16
done
