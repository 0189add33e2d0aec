#!/usr/bin/env bash
# Holtzman et al.'s comparison (issue 17, item 9) on a real public-domain text: the King James Bible
# (Debian's bible-kjv-text, read with its `bible` command), one passage per chapter (1,189), the
# prompt each chapter's first sentence (at most 40 tokens), the human reference the tokens that follow.
#
#   bash benchmarks/holtzman_demo.sh                          # 200 passages, 32 new tokens, SmolLM2
#   PASSAGES=5 NEW_TOKENS=4 bash benchmarks/holtzman_demo.sh  # a smoke run
#
# Needs `apt-get install bible-kjv` (the reader; it brings bible-kjv-text). Environment: PASSAGES
# (200), NEW_TOKENS (32), MODEL (smollm2: a preset, or model.name=DIR), OUT (outputs/holtzman_demo),
# PYTHON (.venv/bin/python if there is one, else python), EXTRA (more overrides for every run).
#
# A study crosses its prompts with one schedule, so the 10 settings are three runs over the same
# passages (prompt_set.pick=random with seed 0 draws the same ones in each), side by side in OUT:
#   temperature/  greedy and temperatures 0.2 to 1.0 (1.0: pure sampling), 6 settings
#   nucleus/      nucleus p = 0.9 and 0.95
#   top_k/        top-k k = 40 and 640
# Uniforms depend on the seed, the prompt's index and the draw only, so every setting of the three
# runs reads the same vector for a passage: one controlled study, read back as one by
# gpt2_sweep.load(OUT). Then the summary of the three (summary.csv/md, plots) and Holtzman's Table 1
# pooled over passages with 95% prompt-bootstrap intervals (table1.md, table1.csv), and the seconds
# each step took (times.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PASSAGES=${PASSAGES:-200}
NEW_TOKENS=${NEW_TOKENS:-32}
MODEL=${MODEL:-smollm2}
OUT=${OUT:-outputs/holtzman_demo}
EXTRA=${EXTRA:-}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
[[ "$MODEL" == *=* ]] || MODEL="model=$MODEL"
if ! command -v bible >/dev/null; then
  echo "error: the bible command is missing: apt-get install bible-kjv (it brings bible-kjv-text)" >&2
  exit 2
fi
mkdir -p "$OUT"
CORPUS="$OUT/kjv_chapters.txt"
TIMES="$OUT/times.txt"
: > "$TIMES"

# "Ge1:1 In the beginning ..." one verse a line -> one chapter a paragraph, verse numbers dropped,
# chapters apart by blank lines.
bible -f gen1:1-rev22:21 | awk '
  { reference = $1; sub(/:[0-9]+$/, "", reference); text = substr($0, length($1) + 2)
    if (reference != chapter) { if (NR > 1) printf "\n\n"; chapter = reference; printf "%s", text }
    else printf " %s", text }
  END { printf "\n" }' > "$CORPUS"
echo "$(grep -c . "$CORPUS") passages in $CORPUS"

STUDY=("$MODEL" "prompts=$CORPUS" prompt_set.corpus=true prompt_set.opening=sentence prompt_set.pick=random
       "prompt_set.limit=$PASSAGES" "max_new_tokens=$NEW_TOKENS" seed=0 print_samples=0 overwrite=true)

timed() {  # timed NAME COMMAND...: run it, append "NAME SECONDS" to times.txt
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  echo "$name $((SECONDS - start))" >> "$TIMES"
}

# shellcheck disable=SC2086  # EXTRA is a list of overrides
timed temperature "$PYTHON" run.py "${STUDY[@]}" sampler=temperature 'sampler.temperature_range=[0.0,1.0]' \
  num_samples=6 "hydra.run.dir=$OUT/temperature" $EXTRA
# shellcheck disable=SC2086
timed nucleus "$PYTHON" run.py "${STUDY[@]}" sampler=nucleus 'sampler.nucleus_range=[0.9,0.95]' \
  num_samples=2 "hydra.run.dir=$OUT/nucleus" $EXTRA
# shellcheck disable=SC2086
timed top_k "$PYTHON" run.py "${STUDY[@]}" sampler.top_k=true 'sampler.top_k_range=[40,640]' \
  num_samples=2 "hydra.run.dir=$OUT/top_k" $EXTRA
timed summary "$PYTHON" -m gpt2_sweep.summarize "$OUT"
timed table1 "$PYTHON" - "$OUT" <<'EOF'
import sys
from pathlib import Path

import gpt2_sweep
from gpt2_sweep.analysis.study_table import study_markdown, study_table

out = Path(sys.argv[1])
table = study_table(gpt2_sweep.load(out))
table.to_csv(out / "table1.csv", index=False)
(out / "table1.md").write_text(study_markdown(table))
print(study_markdown(table))
print(f"Table 1 written to {out / 'table1.md'} and {out / 'table1.csv'}")
EOF
echo "Seconds per step ($TIMES):"
cat "$TIMES"
