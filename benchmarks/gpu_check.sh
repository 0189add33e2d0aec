#!/usr/bin/env bash
# The GPU check as one command (make bench-gpu): the token check of both loops, the speed table of the
# runner (batch-invariant too) beside generate() with its dynamic and static cache, and how many samples
# stay identical across batch sizes with runtime.batch_invariant off and on, all on one card, as JSON in
# $OUT (the device tool's folder) or benchmarks/gpu-results. Wheels the GPU image lacks are taken from
# .whl/ when it is there (../shared/device/wheels.sh .whl); the anchors' script from .anchors/ likewise.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/gpu-results}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
python3 benchmarks/check_tokens.py --device cuda --dtype bf16 --batches 4,64 --new 128 \
  --json "$out/check-tokens.json" 2>&1 | tee "$out/check-tokens.log" || status=1
python3 benchmarks/generation_speed.py --device cuda --batches 4,64,512,2048 --new 256 --dtype bf16 --repeats 1 \
  --json "$out/speed.json" 2>&1 | tee "$out/speed.log" || status=1
python3 benchmarks/batch_invariance.py --device cuda --dtype bf16 --samples 1024 --batches 1024,64,16 --new 64 \
  --json "$out/batch-invariance.json" 2>&1 | tee "$out/batch-invariance.log" || status=1
if [ -f .anchors/peer_speed.py ]; then
  python3 .anchors/peer_speed.py --device cuda --batches 4,64,512,2048 --new 256 --dtype bf16 \
    2>&1 | tee "$out/anchors.log" || status=1
fi
exit $status
