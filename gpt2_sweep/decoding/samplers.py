"""The static loop's exact samplers side by side behind one interface: each maps (rows, vocab) logits,
sampling.RowSettings and one u per row to sampling.Step exactly as the rule does, and each compiles
with torch.compile(fullgraph=True).

- sort: sampling.sample_step, the full stable sort of every row (the simple baseline);
- search: threshold_search.search_step, radix selects by scatter-adds in torch, no sort;
- triton: triton_select.triton_step, the same selects as one Triton kernel per select (CUDA, or the
  CPU under TRITON_INTERPRET=1).
"""
import torch

from .ordering import candidate_step
from .sampling import sample_step
from .threshold_search import search_step

SAMPLERS = ("sort", "search", "triton")
# runtime.sampler=auto in the static loop. The full sort until a GPU measurement of the three
# (benchmarks/sampler_speed.py) says which is fastest; that measurement changes this constant.
AUTO_SAMPLER = "sort"
# The eager static loop's step under auto: the top candidates decide most rows without a whole sort.
CANDIDATES = "top candidates, else a full sort"


def sampler_step(name: str):
    """The step function of the sampler `name` (one of SAMPLERS), uncompiled."""
    if name == "triton":
        from .triton_select import triton_step  # imports triton: only where it is asked for

        return triton_step
    return {"sort": sample_step, "search": search_step}[name]


def chosen_sampler(setting: str, compiled: bool) -> str:
    """The sampler runtime.sampler=`setting` takes in the static loop, compiled or eager."""
    if setting != "auto":
        return setting
    return AUTO_SAMPLER if compiled else CANDIDATES


_compiled = {}


def compiled_sampler(name: str):
    """sampler_step(name) compiled once per process (inductor): for the first batch shape, then once
    more with the batch size symbolic (torch.compile's automatic dynamic shapes)."""
    if name not in _compiled:
        _compiled[name] = torch.compile(sampler_step(name), fullgraph=True)
    return _compiled[name]


def step_function(name: str, compiled: bool):
    """What the static loop calls each step for the sampler `name` (a chosen_sampler result)."""
    if name == CANDIDATES:
        if compiled:
            raise ValueError("the top candidates ask the host which rows they decide: not compilable")
        return candidate_step
    return compiled_sampler(name) if compiled else sampler_step(name)
