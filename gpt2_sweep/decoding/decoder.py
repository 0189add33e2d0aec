"""The static loop over a run's batches: one decode state, one compiled step and its CUDA graphs,
kept while the batches keep one layout (a last, partial batch padded to the full size)."""
from contextlib import contextmanager

import torch

from .compile_cache import persistent_compile_cache
from .generation import MIN_DECODE_ROWS, Generated, padded_rows
from .native_models import fast_attention, native_model
from .prompts import PromptBatch
from .sampling import RowSettings
from .static_decode import CapturedSteps, DecodeState, bucket, decode_n_tokens, decode_one_token, prefill, stop_position
from .samplers import chosen_sampler, step_function

# Every state layout and attention length bucket is a graph of its own (static shapes, by design):
# dynamo's default of 8 per function would run later buckets uncompiled (fullgraph: fail).
STEP_GRAPHS = 256


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


class AutocastForward:
    """The native forward under the caller's autocast (a mixed precision: the products in 16 bits as
    the precision asks, the cache in the dtype attention reads it in), its weight cache off (a CUDA
    graph capture refuses it). The sampler around it runs with autocast off: its arithmetic is float32
    or float64 by design (sampling.sampling_dtype)."""

    def __init__(self, native, device_type: str, dtype: torch.dtype, enabled: bool):
        self.native, self.device_type, self.dtype, self.enabled = native, device_type, dtype, enabled

    def __call__(self, *arguments):
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled, cache_enabled=False):
            return self.native(*arguments)


_compiled_step = None


def compiled_step(backend="inductor"):
    """decode_one_token compiled as one graph, forward, sampler and writes: no graph break and no host
    synchronisation (fullgraph). Shapes are static, so a step's kernels depend on its own state's
    shape only, whatever other batch sizes the process compiled for. Inductor's is made once per
    process, its cache dir set first (compile_cache)."""
    global _compiled_step
    if backend != "inductor":
        return torch.compile(decode_one_token, fullgraph=True, dynamic=False, backend=backend)
    if _compiled_step is None:
        persistent_compile_cache()
        _compiled_step = torch.compile(decode_one_token, fullgraph=True, dynamic=False)
    return _compiled_step


def layout_of(prompts: PromptBatch, settings: RowSettings, new_tokens, stop_token_id, dtype, mixed) -> tuple:
    """What a state's compiled step and CUDA graphs depend on besides its row count and the values
    in its buffers."""
    filters = tuple(values is None for values in (settings.top_ks, settings.min_ps))
    return prompts.longest(), new_tokens, prompts.same_length(), filters, stop_token_id, dtype, mixed


class StaticDecoder:
    """generate()'s samples from the static loop, batch after batch: a native forward (native_model's
    unless given) over a static cache, rows of different prompts left-padded to the longest.

    The decode state, the compiled step and the CUDA graphs stay from one batch to the next while the
    layout does; a batch with fewer rows than the state is padded to its rows (the padding rows'
    results dropped), so a run's last, partial batch reuses them too. allocations counts the states
    allocated; release() drops the state (after an out-of-memory error)."""

    def __init__(self, model, compiled=False, cuda_graphs=False, native=None, sampler="auto"):
        """sampler: runtime.sampler, or the name samplers.chosen_sampler made of it."""
        if cuda_graphs and not compiled:
            raise ValueError("a CUDA graph needs the sync-free (compiled) step")
        self.model, self.native = model, native or native_model(model)
        self.sampler = chosen_sampler(sampler, compiled, next(model.parameters()).device.type == "cuda")
        self.compiled, self.cuda_graphs = compiled, cuda_graphs
        self.allocations = 0
        self.release()

    def release(self) -> None:
        self.state, self.layout, self.forward, self.captured = None, None, None, None

    @torch.inference_mode()
    def __call__(self, prompts: PromptBatch, settings: RowSettings, uniforms, new_tokens, stop_token_id=None,
                 on_step=None) -> Generated:
        """Row r continues prompts' row r with settings' row r, step k drawing with uniforms[r, k];
        on_step(rows) after each position drawn."""
        device = next(self.model.parameters()).device
        dtype, mixed = compute_dtype(self.model), torch.is_autocast_enabled(device.type)
        batch, layout = len(settings), layout_of(prompts, settings, new_tokens, stop_token_id, dtype, mixed)
        if self.state is None or layout != self.layout or len(self.state.settings) < batch:
            self.release()
            rows = max(batch, MIN_DECODE_ROWS)
            self.state = DecodeState.allocate(self.native, prompts.padded(rows), settings.padded(rows),
                                              padded_rows(uniforms, rows), new_tokens, stop_token_id, device,
                                              cache_dtype=dtype)
            self.layout, self.forward = layout, AutocastForward(self.native, device.type, dtype, mixed)
            self.allocations += 1
        else:
            rows = len(self.state.settings)
            self.state.refill(prompts.padded(rows), settings.padded(rows), padded_rows(uniforms, rows))
        state, forward = self.state, self.forward
        # The sampler uncompiled: compiled, it is part of the one graph of the whole step. Eager, the
        # candidates' host synchronisations only matter inside a CUDA graph.
        decode_step, sample = compiled_step() if self.compiled else decode_one_token, step_function(self.sampler)

        def step(length):
            decode_step(forward, state, length, sample)

        max_length = state.tokens.shape[1]
        # Torch's own default dtype, which Lightning's true precisions change, and autocast, which the
        # mixed ones turn on, fixed around the step: it is compiled and captured under one state.
        with (torch.autocast(device.type, enabled=False, cache_enabled=False), default_dtype(torch.float32),
              fast_attention(dtype), torch._dynamo.config.patch(recompile_limit=STEP_GRAPHS)):
            prefill(forward, state)
            if self.cuda_graphs and self.captured is None:
                lengths = sorted({bucket(p) for p in range(state.prompt_length, max_length)})
                self.captured = CapturedSteps(step, state, lengths)
            written = decode_n_tokens(self.captured or step, state, on_step and (lambda: on_step(batch)))
        end = stop_position(state.tokens, state.prompt_length, stop_token_id, written)
        steps = end - state.prompt_length
        # Copies: the next batch refills these buffers.
        return Generated(tokens=state.tokens[:batch, state.prompt_length:end].clone(),
                         logprobs=state.logprobs[:batch, :steps].clone(),
                         entropies=state.entropies[:batch, :steps].clone(),
                         support_sizes=state.support_sizes[:batch, :steps].clone())
