"""The fast decode loop: a fixed-shape step over a static KV cache, compiled or captured.

prefill runs the shared prompt (all but its last token) once at batch 1 and shares its cache with
every row; decode_one_token forwards each row's last token, samples the next with the sort-free
threshold search and writes token and statistics into buffers allocated up front, the position kept
on the device: no host synchronisation and no data-dependent shape. On CUDA each step is replayed
from a CUDA graph captured once per attention length bucket; decode_n_tokens drives it.
"""
from dataclasses import astuple, dataclass

import torch

from .native_models import StaticCache
from .sampling import RowSettings, Step
from .threshold_search import search_step

BUCKET = 64          # attention reads the cache up to the next multiple of this many positions
CHECK_EVERY = 16     # with a stop token, steps between looks at whether every row has stopped


@dataclass
class DecodeState:
    """Everything a step reads and writes, allocated once per batch."""

    tokens: torch.Tensor         # (batch, max_length): the prompt, then each row's picks
    logprobs: torch.Tensor       # (batch, max_length - prompt length) per-step statistics
    entropies: torch.Tensor
    support_sizes: torch.Tensor
    position: torch.Tensor       # (1,): the position the next step writes
    finished: torch.Tensor       # (batch,): the row has produced the stop token
    settings: RowSettings
    uniforms: torch.Tensor       # position t reads uniforms[t - 1]
    cache: StaticCache
    prompt_length: int
    stop_token_id: int | None

    @classmethod
    def allocate(cls, native, prompt_ids, settings, uniforms, max_length, stop_token_id, cache_dtype=None):
        """cache_dtype: the dtype attention reads keys and values in (the weights' unless given)."""
        device = prompt_ids.device
        batch, prompt_length = len(settings), len(prompt_ids)
        cache_dtype = cache_dtype or next(native.model.parameters()).dtype
        tokens = torch.zeros(batch, max_length, dtype=torch.long, device=device)
        tokens[:, :prompt_length] = prompt_ids
        statistic = (batch, max_length - prompt_length)
        # float32 named: Lightning's true precisions set the default dtype to theirs inside predict_step.
        return cls(tokens=tokens, logprobs=torch.zeros(statistic, dtype=torch.float32, device=device),
                   entropies=torch.zeros(statistic, dtype=torch.float32, device=device),
                   support_sizes=torch.zeros(statistic, dtype=torch.long, device=device),
                   position=torch.tensor([prompt_length], device=device),
                   finished=torch.zeros(batch, dtype=torch.bool, device=device),
                   settings=settings.to(device), uniforms=uniforms.to(device),
                   cache=StaticCache(len(native.body.h if hasattr(native.body, "h") else native.body.layers),
                                     batch, native.kv_heads, max_length, native.head_dim, cache_dtype, device),
                   prompt_length=prompt_length, stop_token_id=stop_token_id)

    def restart(self) -> None:
        """Back to the first generated position (after warm-up steps); the cache is rewritten as it goes."""
        self.position.fill_(self.prompt_length)
        self.finished.zero_()


def bucket(length: int, max_length: int) -> int:
    return min(-(-length // BUCKET) * BUCKET, max_length)


def prefill(native, state: DecodeState) -> None:
    """The prompt but its last token, once at batch 1, its cache then shared by every row."""
    before_last = state.prompt_length - 1
    if before_last:
        positions = torch.arange(before_last, device=state.tokens.device)
        native(state.tokens[:1, :before_last], positions, state.cache, bucket(before_last, state.tokens.shape[1]))
        state.cache.share_first_row(before_last)


def decode_one_token(native, state: DecodeState, length: int, sample=search_step, block_rows=None) -> None:
    """Forward each row's last token, pick the next at the position's shared uniform, write both
    and the step's statistics, advance the position; attention reads `length` cache positions.

    With block_rows, every kernel runs on blocks of exactly that many rows, so that the library
    picks one algorithm whatever the batch: a row's rounding, and so its tokens, do not depend on
    the batch it sits in (the batch is a multiple of block_rows)."""
    previous = state.position - 1
    inputs, uniform = state.tokens.index_select(1, previous), state.uniforms.index_select(0, previous)
    size = block_rows or len(inputs)
    blocks = [sample(native(inputs[first:first + size], previous, state.cache, length, first),
                     state.settings.rows(slice(first, first + size)), uniform)
              for first in range(0, len(inputs), size)]
    step = blocks[0] if len(blocks) == 1 else Step(*map(torch.cat, zip(*map(astuple, blocks))))
    tokens = step.tokens
    if state.stop_token_id is not None:
        tokens = torch.where(state.finished, state.stop_token_id, tokens)
        state.finished |= tokens == state.stop_token_id
    state.tokens.index_copy_(1, state.position, tokens.unsqueeze(-1))
    column = state.position - state.prompt_length
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
        step(bucket(position, max_length))
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
