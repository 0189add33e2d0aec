"""The threshold search's selection as one Triton kernel: one row per program, a radix select over the
row's keys while the row sits in L2, then its tied tokens ranked by id. Same picks as threshold_search.

Each pass reads the row once and sums, for each of the 2**RADIX_BITS thresholds of the next digit,
the mass of the tokens at or above it; the last threshold whose mass reaches the limit fixes the
digit. Runs on CUDA, and on the CPU under TRITON_INTERPRET=1 (the tests do), which is read when the
kernel is first built.
"""
import functools
import os

import torch

from .sampling import RowSettings, Step
from .threshold_search import selection_step

RADIX_BITS = 4
BLOCK = 1024  # vocabulary entries a program reads at a time


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Whether this process can run the kernel: triton installed, and CUDA or the interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or interpreted()


@functools.cache
def reaching_kernel(interpret: bool):
    """The kernel, built once per mode (triton.jit reads TRITON_INTERPRET when it decorates)."""
    import triton
    import triton.language as tl

    def reach(keys_ptr, masses_ptr, limits_ptr, tokens_ptr, values_ptr, vocab,
              KEY_BITS: tl.constexpr, RADIX: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        keys_row, masses_row = keys_ptr + row * vocab, masses_ptr + row * vocab
        limit = tl.load(limits_ptr + row)
        digits = tl.arange(0, 2**RADIX)
        value = tl.load(values_ptr + row) * 0  # the key found so far, in the keys' dtype
        # From the top digit down; the last pass may overlap bits already found, where thresholds
        # past the answer never count.
        for step in range(0, (KEY_BITS + RADIX - 1) // RADIX):
            shift = tl.maximum(KEY_BITS - RADIX * (step + 1), 0)
            thresholds = value + (digits.to(value.dtype) << shift.to(value.dtype))
            at_or_above = tl.zeros([2**RADIX], dtype=tl.int32)
            for start in range(0, vocab, BLOCK):
                offsets = start + tl.arange(0, BLOCK)
                inside = offsets < vocab
                keys = tl.load(keys_row + offsets, mask=inside, other=-1)
                masses = tl.load(masses_row + offsets, mask=inside, other=0)
                counted = tl.where(keys[:, None] >= thresholds[None, :], masses[:, None], 0)
                at_or_above += tl.sum(counted, axis=0)
            # Threshold 0 is the value found so far, whose mass always reaches the limit.
            chosen = tl.sum((at_or_above >= limit).to(tl.int32), axis=0) - 1
            value = value + (chosen.to(value.dtype) << shift.to(value.dtype))
        above = tl.zeros([], dtype=tl.int32)
        each = tl.full([], 1, dtype=tl.int32)
        for start in range(0, vocab, BLOCK):
            offsets = start + tl.arange(0, BLOCK)
            inside = offsets < vocab
            keys = tl.load(keys_row + offsets, mask=inside, other=-1)
            masses = tl.load(masses_row + offsets, mask=inside, other=0)
            above += tl.sum(tl.where(keys > value, masses, 0), axis=0)
            each = tl.maximum(each, tl.max(tl.where(keys == value, masses, 0), axis=0))
        rank = (limit - above + each - 1) // each  # 1-based among the tied tokens, in id order
        seen = tl.zeros([], dtype=tl.int32)
        token = tl.zeros([], dtype=tl.int64)
        for start in range(0, vocab, BLOCK):
            offsets = start + tl.arange(0, BLOCK)
            inside = offsets < vocab
            tied = (tl.load(keys_row + offsets, mask=inside, other=-1) == value).to(tl.int32)
            through = tl.cumsum(tied, axis=0) + seen
            token += tl.sum(tl.where((tied == 1) & (through == rank), offsets.to(tl.int64), 0), axis=0)
            seen += tl.sum(tied, axis=0)
        tl.store(tokens_ptr + row, token)
        tl.store(values_ptr + row, value)

    return triton.jit(reach)


# A custom op: torch.compile calls it as it is (dynamo cannot trace the launch), with no graph break.
@torch.library.custom_op("gpt2_sweep::triton_reaching", mutates_args=())
def triton_reaching(keys: torch.Tensor, token_masses: torch.Tensor, limits: torch.Tensor,
                    key_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """threshold_search.reaching's (token, key), by the kernel: one program per row."""
    rows, vocab = keys.shape
    keys, token_masses = keys.contiguous(), token_masses.contiguous()
    tokens = torch.empty(rows, dtype=torch.int64, device=keys.device)
    values = torch.zeros(rows, dtype=keys.dtype, device=keys.device)
    reaching_kernel(interpreted())[(rows,)](keys, token_masses, limits.contiguous(), tokens, values, vocab,
                                            KEY_BITS=key_bits, RADIX=RADIX_BITS, BLOCK=BLOCK)
    return tokens, values


@triton_reaching.register_fake
def _(keys, token_masses, limits, key_bits):
    return keys.new_empty(len(keys), dtype=torch.int64), keys.new_empty(len(keys))


def triton_step(logits, settings: RowSettings, uniform) -> Step:
    """sampling.sample_step's result, each selection one Triton kernel launch."""
    return selection_step(logits, settings, uniform, triton_reaching)
