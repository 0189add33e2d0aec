"""Which decode loop a run uses (runtime.compile and the model's family decide), and running it."""
import logging
from dataclasses import asdict, dataclass, replace

import torch

from .decoder import StaticDecoder, compute_dtype
from .generation import MIN_DECODE_ROWS, Generated, generate, padded_rows
from .native_models import native_model
from .prompts import PromptBatch
from .samplers import CANDIDATES, chosen_sampler

log = logging.getLogger(__name__)
# runtime.batch_invariant on CUDA: rows per block. Large enough that re-reading the weights per
# block costs little at big batches, small enough that a small batch padded to it stays cheap.
INVARIANT_ROWS = 64


@dataclass(frozen=True)
class Engine:
    """What decodes: recorded in the artifact as metadata.engine."""

    loop: str             # "static": a native forward and a fixed-shape step; "dynamic": any transformers model
    model: str            # the native forward's name, or "transformers"
    sampler: str          # samplers.SAMPLERS' name, or "top candidates, else a full sort" (eager)
    compiled: bool        # the whole step (forward, sampler, writes) compiled with torch.compile (inductor)
    cuda_graphs: bool     # each step replayed from a captured CUDA graph
    batch_invariant_rows: int | None = None  # every kernel runs on blocks of this many rows (invariant_rows)

    def describe(self) -> dict:
        return asdict(self)


def choose_engine(model, compile_setting="auto", batch_invariant=False, sampler="auto") -> Engine:
    """auto: compiled and captured on CUDA; on the CPU the eager loop, which measures faster there.
    A model family without a native forward takes the generic loop, whatever was asked. sampler:
    runtime.sampler, for the static loop (samplers.chosen_sampler).
    batch_invariant: the rows per block invariant_rows plans. Call it where the model will run (under
    a mixed precision's autocast): the plan depends on the dtype of its products."""
    engine = chosen_loop(model, compile_setting, sampler)
    if not batch_invariant:
        return engine
    return replace(engine, batch_invariant_rows=invariant_rows(next(model.parameters()).device.type,
                                                               compute_dtype(model)))


def invariant_rows(device_type: str, dtype: torch.dtype) -> int | None:
    """runtime.batch_invariant's block plan: rows per block, or None where the plain path already gives
    a row the same tokens in any batch, so that the whole batch runs at once: the CPU in float32,
    where MKL's reproducible mode computes each row alike from MIN_DECODE_ROWS rows up, and both
    loops pad smaller batches to that. Elsewhere blocks of INVARIANT_ROWS rows on CUDA, of
    MIN_DECODE_ROWS on the CPU."""
    if device_type == "cpu":
        return None if dtype == torch.float32 else MIN_DECODE_ROWS
    return INVARIANT_ROWS


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
    return Engine("static", type(native).__name__, chosen_sampler(sampler_setting, compiled, cuda), compiled,
                  cuda and compiled)


def generic_loop(sampler_setting) -> Engine:
    if sampler_setting != "auto":
        log.warning(f"runtime.sampler={sampler_setting} is for the static loop: the generic loop runs "
                    f"its own sampler ({CANDIDATES})")
    return Engine("dynamic", "transformers", CANDIDATES, False, False)


def decoder_for(engine: Engine, model):
    """What decodes a batch by this engine's loop: a StaticDecoder (keep it across a run's batches:
    its state, compiled step and CUDA graphs are reused), or generate()."""
    if engine.loop == "static":
        return StaticDecoder(model, engine.compiled, engine.cuda_graphs, sampler=engine.sampler)
    return lambda *arguments, **options: generate(model, *arguments, **options)


def generate_static(model, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id=None,
                    compiled=False, cuda_graphs=False, native=None, block_rows=None, on_step=None,
                    sampler="auto") -> Generated:
    """generate()'s samples from the static loop (a StaticDecoder of its own), in blocks of block_rows
    rows if given. sampler: runtime.sampler, or what the engine chose from it."""
    decoder = StaticDecoder(model, compiled, cuda_graphs, native, sampler)
    return in_blocks(decoder, block_rows, prompts, settings, uniforms, new_tokens, stop_token_id, on_step)


def in_blocks(decoder, rows, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id=None,
              on_step=None) -> Generated:
    """decoder's samples, blocks of exactly `rows` rows one after another (the last padded), or the
    whole batch at once with rows None."""
    if rows is None:
        return decoder(prompts, settings, uniforms, new_tokens, stop_token_id, on_step=on_step)
    parts = []
    for first in range(0, len(settings), rows):
        block = slice(first, first + rows)
        count = len(settings.rows(block))
        drawn = decoder(prompts.rows(block).padded(rows), settings.rows(block).padded(rows),
                        padded_rows(uniforms[block], rows), new_tokens, stop_token_id,
                        on_step=on_step and (lambda _: on_step(count)))
        parts.append(drawn.rows(slice(0, count)))
    return Generated.cat(parts, pad_token=stop_token_id or 0)


def decode(engine: Engine, model, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id=None,
           on_step=None, decoder=None) -> Generated:
    """The samples of one batch by the chosen loop: row r continues prompts' row r with the settings
    of row r (sampling.RowSettings), step k drawing with uniforms[r, k] ((rows, new_tokens) float32).

    decoder: decoder_for(engine, model), kept by the caller across batches (a new one if not given).
    Batch-invariant, blocks of engine.batch_invariant_rows rows go through it one after another, each
    with the same shapes and so the same kernels. on_step(samples) after each position drawn."""
    decoder = decoder or decoder_for(engine, model)
    return in_blocks(decoder, engine.batch_invariant_rows, prompts, settings, uniforms, new_tokens, stop_token_id,
                     on_step)
