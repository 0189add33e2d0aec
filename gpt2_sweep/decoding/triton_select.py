"""The threshold search's selection as one Triton kernel: a radix select over each row's keys while the
row sits in L2, then its tied tokens ranked by id. Same picks as threshold_search.

The kernel reads the keys only (the probabilities' float bits): each token's mass, round half to even
of p * 2**28 (sampling.masses), it computes from its key with integer operations. Each pass reads the
row once and sums, for each of the 2**radix_bits thresholds of the next digit, the mass of the tokens
at or above it; the last threshold whose mass reaches the limit fixes the digit, and the mass of the
keys beyond the digit found is carried from pass to pass. A last pass over the row ranks the tied
tokens: 8 passes + 1 with 4-bit digits on float32 keys. How it is launched (digit width, block,
programs, warps) is a KernelShape, timed side by side by benchmarks/sampler_speed.py. Runs on CUDA,
and on the CPU under TRITON_INTERPRET=1 (the tests do), which triton reads when triton_kernels.py is
first imported.
"""
import dataclasses
import functools

import torch

from .sampling import RowSettings, Step
from .threshold_search import selection_step

# A pass compares a block of keys with every threshold: (block, 2**radix_bits) values in registers.
MAX_TILE = 2**16
# (exponent bias, mantissa bits) of the float whose bits a key holds, by the keys' dtype.
FLOAT_LAYOUTS = {torch.int32: (127, 23), torch.int64: (1023, 52)}


@dataclasses.dataclass(frozen=True)
class KernelShape:
    """How the kernel is launched. The default is the shape an H200 measured (README, GPUs; the kernel
    read masses beside the keys then); the others are alternatives for benchmarks/sampler_speed.py
    --triton-variants to measure."""

    radix_bits: int = 4       # bits of the key fixed a pass: 2**radix_bits thresholds, ceil(30 / bits) passes
    block: int = 1024         # vocabulary entries a program reads at a time
    programs_per_sm: int = 0  # 0: one program per row; k: min(rows, k x SMs) programs, each looping over
    #                           rows, so that fewer rows are in flight and each stays in L2 across its passes
    num_warps: int = 4

    PARTS = {"radix": "radix_bits", "block": "block", "persistent": "programs_per_sm", "warps": "num_warps"}

    @classmethod
    def named(cls, name: str) -> "KernelShape":
        """The shape a name says, parts joined by '-' over the default: e.g. radix2, persistent4,
        radix2-persistent1-warps8, block512; 'default' is the default."""
        changes = {}
        for part in name.split("-"):
            prefix = part.rstrip("0123456789")
            if part != "default" and (prefix not in cls.PARTS or prefix == part):
                raise ValueError(f"unknown kernel shape part {part!r} in {name!r} (allowed: default, radixN, "
                                 "blockN, persistentN, warpsN, joined by '-')")
            if part != "default":
                changes[cls.PARTS[prefix]] = int(part[len(prefix):])
        return dataclasses.replace(cls(), **changes)  # checked whole: radix8-block256 is a shape, radix8 alone not

    def __post_init__(self):
        if (not 1 <= self.radix_bits <= 8 or self.block < 16 or self.block & (self.block - 1)
                or self.block << self.radix_bits > MAX_TILE or self.programs_per_sm < 0 or self.num_warps < 1):
            raise ValueError(f"{self}: radix_bits 1 to 8, block a power of two >= 16, block x 2**radix_bits at "
                             f"most {MAX_TILE}, programs_per_sm >= 0, num_warps >= 1")

    def launch(self) -> tuple[int, int, int, int]:
        return self.radix_bits, self.block, self.programs_per_sm, self.num_warps


DEFAULT_SHAPE = KernelShape()


def kernel_masses(probs: torch.Tensor) -> torch.Tensor:
    """The masses the kernel computes from the keys of `probs` (float32 or float64, in [0, 1]), int32:
    sampling.masses's, exactly (tests/test_samplers.py checks it)."""
    keys = probs.contiguous().view(torch.int32 if probs.dtype == torch.float32 else torch.int64).reshape(-1)
    masses = torch.empty(len(keys), dtype=torch.int32, device=keys.device)
    block = 1024
    from .triton_kernels import masses_of

    masses_of[(-(-len(keys) // block),)](keys, masses, len(keys), *FLOAT_LAYOUTS[keys.dtype], BLOCK=block)
    return masses.reshape(probs.shape)


@functools.cache
def multiprocessors(device: torch.device) -> int:
    """Programs that run at once, per program per SM: the SMs of a GPU; 1 under the interpreter."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


# A custom op: torch.compile calls it as it is (dynamo cannot trace the launch), with no graph break.
@torch.library.custom_op("gpt2_sweep::triton_reaching", mutates_args=())
def triton_reaching(keys: torch.Tensor, limits: torch.Tensor, key_bits: int, unit_masses: bool, radix_bits: int,
                    block: int, programs_per_sm: int, num_warps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """threshold_search.reaching's (token, key) by the kernel, each token's mass 1 (unit_masses) or
    computed from its key, launched as KernelShape(radix_bits, block, programs_per_sm, num_warps) says."""
    rows, vocab = keys.shape
    keys = keys.contiguous()
    tokens = torch.empty(rows, dtype=torch.int64, device=keys.device)
    values = torch.empty(rows, dtype=keys.dtype, device=keys.device)
    programs = rows if programs_per_sm == 0 else min(rows, programs_per_sm * multiprocessors(keys.device))
    if rows:
        bias, mantissa = FLOAT_LAYOUTS[keys.dtype]
        from .triton_kernels import reach

        reach[(programs,)](keys, limits.contiguous(), tokens, values, rows, vocab, KEY_BITS=key_bits, BIAS=bias,
                           MANTISSA=mantissa, UNIT_MASSES=unit_masses, RADIX=radix_bits, BLOCK=block,
                           num_warps=num_warps)
    return tokens, values


@triton_reaching.register_fake
def _(keys, limits, key_bits, unit_masses, radix_bits, block, programs_per_sm, num_warps):
    return keys.new_empty(len(keys), dtype=torch.int64), keys.new_empty(len(keys))


def triton_step(logits, settings: RowSettings, uniform, shape: KernelShape = DEFAULT_SHAPE) -> Step:
    """sampling.sample_step's result, each selection one Triton kernel launch of `shape`."""
    def find(keys, token_masses, limits, key_bits):  # the kernel computes token_masses from the keys
        return triton_reaching(keys, limits, key_bits, token_masses is None, *shape.launch())

    return selection_step(logits, settings, uniform, find)
