"""Which decode loop a run uses (runtime.compile and the model's family decide), and running it."""
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch

from .generation import MIN_DECODE_ROWS, Generated, generate, padded_rows
from .native_models import native_model
from .prompts import PromptBatch
from .samplers import CANDIDATES, chosen_sampler, step_function
from .static_decode import CapturedSteps, DecodeState, bucket, decode_n_tokens, decode_one_token, prefill, stop_position

log = logging.getLogger(__name__)
# runtime.batch_invariant on CUDA: rows per block. Large enough that re-reading the weights per
# block costs little at big batches, small enough that a small batch padded to it stays cheap. The
# CPU's reproducible MKL mode makes rows invariant from MIN_DECODE_ROWS up: its blocks are that size.
INVARIANT_ROWS = 64


@dataclass(frozen=True)
class Engine:
    """What decodes: recorded in the artifact as metadata.engine."""

    loop: str             # "static": a native forward and a fixed-shape step; "dynamic": any transformers model
    model: str            # the native forward's name, or "transformers"
    sampler: str          # samplers.SAMPLERS' name, or "top candidates, else a full sort" (eager)
    compiled: bool        # the sampler is compiled with torch.compile (inductor)
    cuda_graphs: bool     # each step replayed from a captured CUDA graph
    batch_invariant_rows: int | None = None  # every kernel runs on blocks of this many rows

    def describe(self) -> dict:
        return asdict(self)


def choose_engine(model, compile_setting="auto", batch_invariant=False, sampler="auto") -> Engine:
    """auto: compiled and captured on CUDA; on the CPU the eager loop, which measures faster there.
    A model family without a native forward takes the generic loop, whatever was asked. sampler:
    runtime.sampler, for the static loop (samplers.chosen_sampler).
    batch_invariant: decode in blocks of INVARIANT_ROWS rows on CUDA, MIN_DECODE_ROWS on the CPU (see
    decode)."""
    engine = chosen_loop(model, compile_setting, sampler)
    if not batch_invariant:
        return engine
    cuda = next(model.parameters()).device.type == "cuda"
    return replace(engine, batch_invariant_rows=INVARIANT_ROWS if cuda else MIN_DECODE_ROWS)


def chosen_loop(model, compile_setting, sampler_setting="auto") -> Engine:
    cuda = next(model.parameters()).device.type == "cuda"
    compiled = cuda if compile_setting == "auto" else bool(compile_setting)
    native = native_model(model)
    if native is None:
        if compile_setting is True:
            log.warning(f"runtime.compile=true: {type(model).__name__} has no native forward here (GPT-2 "
                        "and Llama-style models do), so the generic loop runs, uncompiled")
        return generic_loop(sampler_setting)
    if not (cuda or compiled):
        return generic_loop(sampler_setting)
    return Engine("static", type(native).__name__, chosen_sampler(sampler_setting, compiled), compiled,
                  cuda and compiled)


def generic_loop(sampler_setting) -> Engine:
    if sampler_setting != "auto":
        log.warning(f"runtime.sampler={sampler_setting} is for the static loop: the generic loop runs "
                    f"its own sampler ({CANDIDATES})")
    return Engine("dynamic", "transformers", CANDIDATES, False, False)


def compute_dtype(model) -> torch.dtype:
    """The dtype the model's matrix products run in here: autocast's where the caller turned it on for
    the model's device (a mixed precision: Lightning does around predict_step), else the weights'."""
    parameter = next(model.parameters())
    device_type = parameter.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else parameter.dtype


@contextmanager
def default_dtype(dtype: torch.dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@torch.inference_mode()
def generate_static(model, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id=None,
                    compiled=False, cuda_graphs=False, native=None, block_rows=None, on_step=None,
                    sampler="auto") -> Generated:
    """generate()'s samples from the static loop: a native forward (native_model's, unless given) over
    a static cache, rows of different prompts left-padded to the longest.

    Under a caller's autocast (a mixed precision), the forward runs under the same autocast, as the
    model's own forward does in the generic loop: the products in 16 bits as the precision asks, and
    the cache in that dtype, the one attention reads it in. The sampler runs with autocast off: its
    arithmetic is float32 or float64 by design (sampling.sampling_dtype), and a compiled or captured
    step must not depend on the caller's autocast state."""
    if cuda_graphs and not compiled:
        raise ValueError("a CUDA graph needs the sync-free (compiled) sampler")
    native = native or native_model(model)
    device = next(model.parameters()).device
    dtype, mixed = compute_dtype(model), torch.is_autocast_enabled(device.type)
    batch = len(settings)
    rows = -(-batch // block_rows) * block_rows if block_rows else max(batch, MIN_DECODE_ROWS)
    state = DecodeState.allocate(native, prompts.padded(rows), settings.padded(rows), padded_rows(uniforms, rows),
                                 new_tokens, stop_token_id, device, cache_dtype=dtype)
    # Eager under auto, the step takes the candidates, whose host synchronisations only matter
    # inside a CUDA graph. sampler: runtime.sampler, or what the engine chose from it.
    sample = step_function(chosen_sampler(sampler, compiled), compiled)

    # Autocast's weight cache off throughout (a CUDA graph capture refuses it) and torch's own default
    # dtype, which Lightning's true precisions change: the compiled sampler sees the same state under
    # every precision (each change would recompile it).
    def forward(*arguments):
        with torch.autocast(device.type, dtype=dtype, enabled=mixed, cache_enabled=False):
            return native(*arguments)

    def step(length):
        decode_one_token(forward, state, length, sample, block_rows)

    max_length = state.tokens.shape[1]
    with torch.autocast(device.type, enabled=False, cache_enabled=False), default_dtype(torch.float32):
        prefill(forward, state)
        if cuda_graphs:
            lengths = sorted({bucket(p, max_length) for p in range(state.prompt_length, max_length)})
            step = CapturedSteps(step, state, lengths)
        written = decode_n_tokens(step, state, on_step and (lambda: on_step(batch)))
    end = stop_position(state.tokens, state.prompt_length, stop_token_id, written)
    steps = end - state.prompt_length
    return Generated(tokens=state.tokens[:batch, state.prompt_length:end], logprobs=state.logprobs[:batch, :steps],
                     entropies=state.entropies[:batch, :steps], support_sizes=state.support_sizes[:batch, :steps])


def decode(engine: Engine, model, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id=None,
           on_step=None) -> Generated:
    """The samples of one batch by the chosen loop: row r continues prompts' row r with the settings
    of row r (sampling.RowSettings), step k drawing with uniforms[r, k] ((rows, new_tokens) float32).

    Batch-invariant, the static loop runs every kernel on blocks of the same number of rows inside
    each step; the generic loop decodes such blocks one after another. on_step(samples) after each
    position drawn."""
    rows = engine.batch_invariant_rows
    if engine.loop == "static":
        return generate_static(model, prompts, settings, uniforms, new_tokens, stop_token_id,
                               engine.compiled, engine.cuda_graphs, block_rows=rows, on_step=on_step,
                               sampler=engine.sampler)
    if rows is None:
        return generate(model, prompts, settings, uniforms, new_tokens, stop_token_id, on_step=on_step)
    parts = []
    for first in range(0, len(settings), rows):
        block = slice(first, first + rows)
        count = len(settings.rows(block))
        drawn = generate(model, prompts.rows(block).padded(rows), settings.rows(block).padded(rows),
                         padded_rows(uniforms[block], rows), new_tokens, stop_token_id,
                         on_step=on_step and (lambda _: on_step(count)))
        parts.append(drawn.rows(slice(0, count)))
    return Generated.cat(parts, pad_token=stop_token_id or 0)
