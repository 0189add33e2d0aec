#!/usr/bin/env bash
# The GPU check (make bench-gpu [PARTS="a1 a2 b b2 c d p"]), in parts that each end within 4 minutes on an
# H100/H200, start-up included, each writing JSON to $OUT (the device tool's folder) or
# benchmarks/gpu-results:
#   a1, a2  run.py end to end with devices=gpu: GPT-2's shape in bf16-true and bf16-mixed, compile on
#           and off (a1); SmolLM2's shape in bf16-true and 16-mixed, DDP with one rank, a study (a2)
#   b       the token check of both loops against the rule in float64, the static loop with the triton
#           sampler (auto on CUDA); b2: the static loop with the sort and search samplers. Each
#           (sampler, batch) compiles the whole step once, for its captured run (its recorded run is
#           eager): about 35 s on an H200. Compiling twice, all three samplers in one part ran past
#           215 s there (2026-11-30)
#   c       each sampler alone (sampler_speed.py; triton in each kernel launch shape of TRITON_VARIANTS, each
#           compiled afresh: about 3 s a batch size on an H200, so about 2 minutes for the part, estimated),
#           then the speed table at batch 4 / 64 / 512 / 2048 x 128
#           new tokens: the runner (auto: triton), generate() dynamic and static beside it, peak
#           memory, first-call (compile) time, the attention kernels that ran
#   p       the anchors' peers (../shared/anchors/peer_speed.py copied into .anchors/), if there
#   d       how many samples stay identical across batch sizes, runtime.batch_invariant off and on
# Usage: bash benchmarks/gpu_check.sh [PART ...]   (no part: all of them, one after the other)
# Wheels the GPU image lacks are taken from .whl/ when it is there (../shared/device/wheels.sh .whl),
# the anchors' script from .anchors/, SmolLM2's tokenizer (for a1, a2) from .gpu-tokenizer/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/gpu-results}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
tokenizer=${GPU_CHECK_TOKENIZER:-.gpu-tokenizer}  # missing: gpu_runs.py takes the bundled SmolLM2's
parts=${*:-a1 a2 b b2 c d p}
# The triton sampler's launch shapes part c times beside the default (triton_select.KernelShape.named).
TRITON_VARIANTS=${TRITON_VARIANTS:-default,radix2,persistent1,persistent4,warps8}
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"

part() {  # part NAME COMMAND...: runs it, its output in NAME.log, its time in NAME.seconds
  local name=$1; shift
  local start=$SECONDS
  "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "$((SECONDS - start))" > "$out/$name.seconds"
  echo "part $name: rc=$rc in $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || status=1
}

for p in $parts; do
  case $p in
    a1) part a1 python3 benchmarks/gpu_runs.py --tokenizer-dir "$tokenizer" --group gpt2 --json "$out/runs-gpt2.json" ;;
    a2) part a2 python3 benchmarks/gpu_runs.py --tokenizer-dir "$tokenizer" --group llama --json "$out/runs-llama.json" ;;
    b) part b python3 benchmarks/check_tokens.py --device cuda --dtype bf16 --batches 4,64 --new 64 \
         --samplers triton --json "$out/check-tokens.json" ;;
    b2) part b2 python3 benchmarks/check_tokens.py --device cuda --dtype bf16 --batches 64 --new 64 --loops static \
         --samplers sort,search --json "$out/check-tokens-sort-search.json" ;;
    c) part c-samplers python3 benchmarks/sampler_speed.py --device cuda --batches 4,64,512,2048 --repeats 5 \
         --triton-variants "$TRITON_VARIANTS" --json "$out/sampler-speed.json"
       part c python3 benchmarks/generation_speed.py --device cuda --batches 4,64,512,2048 --new 128 --dtype bf16 \
         --repeats 1 --peers runner,hf_generate,hf_generate_static --json "$out/speed.json"
;;
    p) if [ -f .anchors/peer_speed.py ]; then
         part p python3 .anchors/peer_speed.py --device cuda --batches 4,64,512,2048 --new 128 --dtype bf16
       fi ;;
    d) part d python3 benchmarks/batch_invariance.py --device cuda --dtype bf16 --samples 512 --batches 512,64,16 \
         --new 48 --json "$out/batch-invariance.json" ;;
    *) echo "unknown part $p (allowed: a1 a2 b b2 c d p)" >&2; exit 2 ;;
  esac
done
exit $status
