"""The fast decode loop: a fixed-shape step over a static KV cache, compiled or captured.

prefill runs each distinct prompt (all but its last token) once, the prompts left-padded to the
longest, and copies its cache to the rows that continue it; decode_one_token forwards each row's
last token, samples the next with the run's sampler (samplers.py) and writes token and statistics
into buffers allocated up front, the position kept on the device: no host synchronisation and no
data-dependent shape, whatever the prompts' lengths. On CUDA each step is replayed from a CUDA graph
captured once per attention length bucket; decode_n_tokens drives it. decoder.py keeps all of it
across a run's batches.
"""
from dataclasses import dataclass, fields

import torch

from .native_models import StaticCache
from .prompts import PromptBatch
from .sampling import RowSettings
from .threshold_search import search_step

# Attention reads the cache up to the next multiple of this many positions, the cache's last columns
# included (its width is rounded up too, cache_width): every key length and mask width is a multiple
# of 64, as CUDA's fused attention kernels want their masks aligned. Columns past a row's position
# are masked.
BUCKET = 64
CHECK_EVERY = 16     # with a stop token, steps between looks at whether every row has stopped


@dataclass
class DecodeState:
    """Everything a step reads and writes, allocated once per batch shape (refill takes the next
    batch of that shape). Prompts shorter than the
    longest are left-padded: every row's first generated token is at column prompt_length."""

    tokens: torch.Tensor         # (batch, prompt length + new tokens): the padded prompts, then each row's picks
    logprobs: torch.Tensor       # (batch, new tokens) per-step statistics
    entropies: torch.Tensor
    support_sizes: torch.Tensor
    position: torch.Tensor       # (1,): the column the next step writes
    finished: torch.Tensor       # (batch,): the row has produced the stop token
    settings: RowSettings
    uniforms: torch.Tensor       # (batch, new tokens): step k of row r reads uniforms[r, k]
    cache: StaticCache
    prompts: PromptBatch
    prompt_length: int           # the longest prompt's
    stop_token_id: int | None

    @classmethod
    def allocate(cls, native, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id, device,
                 cache_dtype=None):
        """cache_dtype: the dtype attention reads keys and values in (the weights' unless given)."""
        batch, prompt_length = len(settings), prompts.longest()
        padded, _ = prompts.left_padded()
        tokens = torch.zeros(batch, prompt_length + new_tokens, dtype=torch.long, device=device)
        tokens[:, :prompt_length] = padded.index_select(0, prompts.of_row).to(device)
        starts = None if prompts.same_length() else row_starts(prompts).to(device)
        statistic = (batch, new_tokens)
        # float32 named: Lightning's true precisions set the default dtype to theirs inside predict_step.
        return cls(tokens=tokens, logprobs=torch.zeros(statistic, dtype=torch.float32, device=device),
                   entropies=torch.zeros(statistic, dtype=torch.float32, device=device),
                   support_sizes=torch.zeros(statistic, dtype=torch.long, device=device),
                   position=torch.tensor([prompt_length], device=device),
                   finished=torch.zeros(batch, dtype=torch.bool, device=device),
                   settings=settings.to(device), uniforms=uniforms.to(device),
                   cache=new_cache(native, batch, cache_width(prompt_length + new_tokens), device, starts,
                                   cache_dtype),
                   prompts=prompts, prompt_length=prompt_length, stop_token_id=stop_token_id)

    def refill(self, prompts: PromptBatch, settings: RowSettings, uniforms) -> None:
        """Another batch of the same layout into the same buffers, for the same compiled step and
        CUDA graphs (they read these addresses); the cache is rewritten as the batch goes."""
        padded, _ = prompts.left_padded()
        self.tokens[:, :self.prompt_length] = padded.index_select(0, prompts.of_row).to(self.tokens.device)
        for field in fields(settings):
            if getattr(settings, field.name) is not None:
                getattr(self.settings, field.name).copy_(getattr(settings, field.name))
        self.uniforms.copy_(uniforms)
        if self.cache.starts is not None:
            self.cache.starts.copy_(row_starts(prompts))
        self.prompts = prompts
        self.restart()

    def restart(self) -> None:
        """Back to the first generated position (after warm-up steps); the cache is rewritten as it goes."""
        self.position.fill_(self.prompt_length)
        self.finished.zero_()


def row_starts(prompts: PromptBatch) -> torch.Tensor:
    """Each row's first column: the longest prompt's length less its own."""
    return (prompts.longest() - prompts.lengths()).index_select(0, prompts.of_row)


def new_cache(native, batch, max_length, device, starts=None, dtype=None) -> StaticCache:
    """A static cache for the native forward, in `dtype` (the weights' unless given)."""
    dtype = dtype or next(native.model.parameters()).dtype
    layers = len(native.body.h if hasattr(native.body, "h") else native.body.layers)
    return StaticCache(layers, batch, native.kv_heads, max_length, native.head_dim, dtype, device, starts)


def bucket(length: int) -> int:
    """The cache columns attention reads for `length` positions: the next multiple of BUCKET."""
    return -(-length // BUCKET) * BUCKET


def cache_width(max_length: int) -> int:
    """The cache columns a sequence of max_length tokens needs: its last token is picked, never
    forwarded, so the last step reads bucket(max_length - 1) columns."""
    return bucket(max_length - 1)


def prefill(native, state: DecodeState) -> None:
    """Every distinct prompt but its last token, once (one row each, left-padded to the longest),
    its cache then copied to the rows that continue it."""
    before_last = state.prompt_length - 1
    if not before_last:
        return
    prompts, device = state.prompts, state.tokens.device
    padded, _ = prompts.left_padded()
    distinct = PromptBatch(prompts.ids, torch.arange(len(prompts.ids)))
    starts = None if prompts.same_length() else row_starts(distinct).to(device)
    width = bucket(before_last)
    prefix = state.cache.empty_like(len(prompts.ids), width, starts)
    native(padded[:, :before_last].to(device), torch.arange(before_last, device=device), prefix, width)
    state.cache.take_prefix(prefix, prompts.of_row.to(device), before_last)


def decode_one_token(native, state: DecodeState, length: int, sample=search_step) -> None:
    """Forward each row's last token, pick the next at the row's uniform of the step, write both
    and the step's statistics, advance the position; attention reads `length` cache columns."""
    previous, column = state.position - 1, state.position - state.prompt_length
    inputs, uniforms = state.tokens.index_select(1, previous), state.uniforms.index_select(1, column).squeeze(1)
    step = sample(native(inputs, previous, state.cache, length), state.settings, uniforms)
    tokens = step.tokens
    if state.stop_token_id is not None:
        tokens = torch.where(state.finished, state.stop_token_id, tokens)
        state.finished |= tokens == state.stop_token_id
    state.tokens.index_copy_(1, state.position, tokens.unsqueeze(-1))
    state.logprobs.index_copy_(1, column, step.logprobs.unsqueeze(-1).float())
    state.entropies.index_copy_(1, column, step.entropies.unsqueeze(-1).float())
    state.support_sizes.index_copy_(1, column, step.support_sizes.unsqueeze(-1))
    state.position += 1


class CapturedSteps:
    """decode_one_token replayed from one CUDA graph per attention length, captured on first use.

    A capture needs a warm-up run, which really steps: the state is restarted after each capture,
    so captures happen before the first real step (all lengths the run will need).
    """

    def __init__(self, step, state: DecodeState, lengths):
        self.graphs = {}
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for length in lengths:
                step(length)  # warm-up: lazy initialisation and compilation happen outside the graph
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    step(length)
                self.graphs[length] = graph
                state.restart()
        torch.cuda.current_stream().wait_stream(stream)

    def __call__(self, length: int) -> None:
        self.graphs[length].replay()


def decode_n_tokens(step, state: DecodeState, on_step=None) -> int:
    """Run step(length) for every position after the prompt; return the position after the last
    written one (earlier when every row has produced the stop token). on_step() after each step
    (host-side only: it waits for nothing)."""
    max_length = state.tokens.shape[1]
    for position in range(state.prompt_length, max_length):
        step(bucket(position))
        if on_step is not None:
            on_step()
        done = position + 1 - state.prompt_length
        if state.stop_token_id is not None and done % CHECK_EVERY == 0 and bool(state.finished.all()):
            return position + 1
    return max_length


def stop_position(tokens: torch.Tensor, prompt_length: int, stop_token_id, written: int) -> int:
    """Where the loop would have ended had it checked after every step: once every row stopped."""
    if stop_token_id is None:
        return written
    stopped = tokens[:, prompt_length:written] == stop_token_id
    if not bool(stopped.any(dim=-1).all()):
        return written
    return prompt_length + int(stopped.to(torch.uint8).argmax(dim=-1).max()) + 1
