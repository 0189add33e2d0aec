"""The static loop's exact samplers side by side behind one interface: each maps (rows, vocab) logits,
sampling.RowSettings and one u per row to sampling.Step exactly as the rule does, and each compiles
with torch.compile(fullgraph=True).

- sort: sampling.sample_step, the full stable sort of every row (the simple baseline);
- search: threshold_search.search_step, radix selects by scatter-adds in torch, no sort;
- triton: triton_select.triton_step, the same selects as one Triton kernel per select (CUDA, or the
  CPU under TRITON_INTERPRET=1).
"""
import importlib.util

import torch

from .ordering import candidate_step
from .sampling import sample_step
from .threshold_search import search_step

SAMPLERS = ("sort", "search", "triton")
# runtime.sampler=auto in the compiled static loop, as measured. CUDA: benchmarks/sampler_speed.py on
# one H200 (torch 2.11, triton 3.6, float32 logits, vocabulary 50,257, 2026-11-30; README, GPUs), ms a
# step at batch 4 / 64 / 512 / 2048: triton 1.3 / 1.1 / 3.1 / 9.9, sort - / - / 3.5 / 13.1, search
# - / - / 8.2 / 30.0 (-: inductor failed on the cumulative sums then, see scans.py). CPU
# (runtime.compile=true): benchmarks/generation_speed.py, the whole loop at batch 4 / 64, 2 cores,
# 2026-11-30: search 74 / 154 tokens/s, sort 62 / 114 (triton runs there only under its interpreter).
# The triton kernel measured then read an int32 mass array beside the keys, 10 passes a select; it
# reads the keys alone now, 9 passes (triton_select.py): not yet measured on a GPU.
AUTO_SAMPLER = {"cuda": "triton", "cpu": "search"}
# The eager static loop's step under auto: the top candidates decide most rows without a whole sort.
CANDIDATES = "top candidates, else a full sort"


def sampler_step(name: str):
    """The step function of the sampler `name` (one of SAMPLERS), uncompiled."""
    if name == "triton":
        from .triton_select import triton_step  # imports triton: only where it is asked for

        return triton_step
    return {"sort": sample_step, "search": search_step}[name]


def chosen_sampler(setting: str, compiled: bool, cuda: bool = False) -> str:
    """The sampler runtime.sampler=`setting` takes in the static loop, compiled or eager, on CUDA or
    the CPU."""
    if setting != "auto":
        return setting
    if not compiled:
        return CANDIDATES
    chosen = AUTO_SAMPLER["cuda" if cuda else "cpu"]
    if chosen == "triton" and importlib.util.find_spec("triton") is None:  # a CUDA build without it
        return "sort"
    return chosen


_compiled = {}


def compiled_sampler(name: str):
    """sampler_step(name) compiled once per process (inductor): for the first batch shape, then once
    more with the batch size symbolic (torch.compile's automatic dynamic shapes)."""
    if name not in _compiled:
        _compiled[name] = torch.compile(sampler_step(name), fullgraph=True)
    return _compiled[name]


def step_function(name: str):
    """What the static loop's step calls for the sampler `name` (a chosen_sampler result), uncompiled:
    compiled, the step compiles it with the rest of the step."""
    return candidate_step if name == CANDIDATES else sampler_step(name)
