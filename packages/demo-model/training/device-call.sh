#!/usr/bin/env bash
# One resumable training call on the H200 (run from the repo root by the device tool; $OUT comes back).
#   bash packages/demo-model/training/device-call.sh first  MINUTES [train.py args...]
#       resumes from the committed weights in packages/demo-model/model (no optimizer moments)
#   bash packages/demo-model/training/device-call.sh next   MINUTES [train.py args...]
#       resumes from /tmp/kascade-ckpt/last (weights + AdamW moments), left by the previous call
#       while the machine stayed warm
# Brings back the bf16 weights, metrics, state and the small files (the moments stay in /tmp:
# $OUT returns at most 8 files).
set -eu
mode=$1 minutes=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=/tmp/kascade-ckpt
mkdir -p $root
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
if [ "$mode" = first ]; then
  resume=$here/../model state=$here/logs/state.json
else
  resume=$(readlink -f $root/last) state=$resume/state.json
fi
out=$root/call-$(date +%s)
python3 "$here/train.py" --out "$out" --resume "$resume" --state "$state" --minutes "$minutes" "$@" || echo "train.py exit $?"
ln -sfn "$out" $root/last
cd "$out"
cp model-*.safetensors metrics.jsonl state.json "$OUT"/ 2>/dev/null || true
tar czf "$OUT/small.tgz" --exclude='model-*' --exclude='optim-*' --exclude=metrics.jsonl --exclude=state.json .
ls -la "$OUT"
