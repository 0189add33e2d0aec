"""Cumulative sums along a row that a compiled graph leaves to ATen's kernel.

torch 2.11's inductor fails to generate its split scan for CUDA over rows of a vocabulary's length
at small batches ("InductorError: TypeError: list indices must be integers or slices, not NoneType",
seen on an H200 at batches 4 and 64, vocabulary 50,257). Under torch.compile the sum goes through
a custom op, which inductor calls as it is (CUDA graphs capture it as any other kernel); run
eagerly it is torch.cumsum. The masses summed are whole numbers, so the order of the additions
cannot change a result.
"""
import torch


@torch.library.custom_op("gpt2_sweep::row_cumsum", mutates_args=())
def _aten_row_cumsum(values: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return torch.cumsum(values, dim=-1, dtype=dtype)


@_aten_row_cumsum.register_fake
def _(values, dtype):
    if dtype is None:  # torch.cumsum's promotion: integers and booleans sum in int64
        dtype = values.dtype if values.is_floating_point() else torch.int64
    return values.new_empty(values.shape, dtype=dtype)


def row_cumsum(values: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """torch.cumsum(values, dim=-1, dtype=dtype); compiled, ATen's kernel rather than inductor's."""
    if torch.compiler.is_compiling():
        return _aten_row_cumsum(values, dtype)
    return torch.cumsum(values, dim=-1, dtype=dtype)
