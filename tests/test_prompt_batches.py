"""Rows of different prompts in one batch: each row's sample is that of its prompt decoded alone."""
import pytest
import torch

from conftest import tiny_gpt2, tiny_llama
from gpt2_sweep.decoding.engines import Engine, decode, generate_static
from gpt2_sweep.decoding.generation import generate
from gpt2_sweep.decoding.native_models import native_model
from gpt2_sweep.decoding.prompts import PromptBatch, one_prompt, step_uniforms
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms

PROMPTS = [[7], [5, 17, 300], [41, 8, 2, 77, 6, 90], [3, 4, 250, 12, 9, 100, 61, 33, 2]]  # 1 to 9 tokens
# greedy, T = 0.8 with nucleus 0.9, T = 1.5, top_k 5, min_p 0.1
SETTINGS = RowSettings(torch.tensor([0.0, 0.8, 1.5, 1.0, 1.0]), torch.tensor([1.0, 0.9, 1.0, 1.0, 1.0]),
                       torch.tensor([0, 0, 0, 5, 0]), torch.tensor([0.0, 0.0, 0.0, 0.0, 0.1]))
NEW = 8
MODELS = {"gpt2": lambda: tiny_gpt2(400, seed=2), "llama": lambda: tiny_llama(400, seed=2)}
LOOPS = {"dynamic": generate, "static": generate_static}


def study(prompt_ids=PROMPTS):
    """Every prompt with every setting; each row its own vector of uniforms (as (prompt, draw) gives)."""
    rows = [(prompt, setting) for prompt in range(len(prompt_ids)) for setting in range(len(SETTINGS))]
    prompts = PromptBatch.of([prompt_ids[prompt] for prompt, _ in rows])
    settings = SETTINGS.rows([setting for _, setting in rows])
    uniforms = torch.stack([step_uniforms(shared_uniforms(100 + row, 20), len(prompt_ids[prompt]), NEW)
                            for row, (prompt, _) in enumerate(rows)])
    return prompts, settings, uniforms


def alone(loop, model, prompts, settings, uniforms, stop=None):
    """Each row from a batch of its own prompt's rows only (a single-prompt batch)."""
    rows = {}
    for prompt in range(len(prompts.ids)):
        chosen = (prompts.of_row == prompt).nonzero().flatten()
        drawn = loop(model, PromptBatch.single(prompts.ids[prompt], len(chosen)), settings.rows(chosen),
                     uniforms[chosen], NEW, stop)
        rows |= {int(row): drawn.rows(slice(index, index + 1)) for index, row in enumerate(chosen)}
    return rows


def assert_row_is_alone(drawn, row, expected, stop=None):
    """Tokens equal (rows that stopped are filled with the stop token, whatever the batch's length),
    statistics equal up to the row's stop; logprobs and entropies within 1e-5."""
    tokens, wanted = drawn.tokens[row].tolist(), expected.tokens[0].tolist()
    if stop is not None:
        tokens, wanted = tokens + [stop] * (NEW - len(tokens)), wanted + [stop] * (NEW - len(wanted))
    assert tokens == wanted, row
    steps = wanted.index(stop) + 1 if stop in wanted else NEW
    assert torch.equal(drawn.support_sizes[row, :steps], expected.support_sizes[0, :steps]), row
    torch.testing.assert_close(drawn.logprobs[row, :steps], expected.logprobs[0, :steps], rtol=0, atol=1e-5)
    torch.testing.assert_close(drawn.entropies[row, :steps], expected.entropies[0, :steps], rtol=0, atol=1e-5)


def batches(count, size, seed):
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order.split(size)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("family", MODELS)
def test_each_row_is_its_prompt_decoded_alone_whatever_the_batch_and_order(family, loop):
    model, (prompts, settings, uniforms) = MODELS[family](), study()
    expected = alone(LOOPS[loop], model, prompts, settings, uniforms)
    assert len({tuple(row.tokens[0].tolist()) for row in expected.values()}) >= 15  # rows do differ
    for size, seed in ((len(settings), 0), (3, 1)):
        for batch in batches(len(settings), size, seed):
            drawn = LOOPS[loop](model, prompts.rows(batch), settings.rows(batch), uniforms[batch], NEW)
            for index, row in enumerate(batch.tolist()):
                assert_row_is_alone(drawn, index, expected[row])


@pytest.mark.parametrize("loop", LOOPS)
def test_prompts_of_one_length_share_a_batch_unpadded(loop):
    model, (prompts, settings, uniforms) = MODELS["gpt2"](), study([[5, 17, 300], [41, 8, 2]])
    expected = alone(LOOPS[loop], model, prompts, settings, uniforms)
    batch = batches(len(settings), len(settings), 4)[0]
    drawn = LOOPS[loop](model, prompts.rows(batch), settings.rows(batch), uniforms[batch], NEW)
    for index, row in enumerate(batch.tolist()):
        assert_row_is_alone(drawn, index, expected[row])


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stop_token_ends_each_row_as_alone(loop):
    model, (prompts, settings, uniforms) = MODELS["gpt2"](), study()
    rows = slice(len(SETTINGS), 2 * len(SETTINGS))  # the second prompt's
    free = LOOPS[loop](model, PromptBatch.single(PROMPTS[1], len(SETTINGS)), settings.rows(rows), uniforms[rows], NEW)
    stop = free.tokens[1, 2].item()  # a token one row draws
    expected = alone(LOOPS[loop], model, prompts, settings, uniforms, stop)
    assert sum(stop in row.tokens[0].tolist() for row in expected.values()) >= 2
    for batch in batches(len(settings), 7, 2):
        drawn = LOOPS[loop](model, prompts.rows(batch), settings.rows(batch), uniforms[batch], NEW, stop)
        for index, row in enumerate(batch.tolist()):
            assert_row_is_alone(drawn, index, expected[row], stop)


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("family", MODELS)
def test_one_row_batches_give_the_rows_alone(family, loop):
    model, (prompts, settings, uniforms) = MODELS[family](), study()
    expected = alone(LOOPS[loop], model, prompts, settings, uniforms)
    for row in range(len(settings)):
        drawn = LOOPS[loop](model, prompts.rows([row]), settings.rows([row]), uniforms[row:row + 1], NEW)
        assert_row_is_alone(drawn, 0, expected[row])


@pytest.mark.parametrize("loop", ["static", "dynamic"])
def test_batch_invariant_blocks_take_mixed_prompts(loop):
    model, (prompts, settings, uniforms) = MODELS["llama"](), study()
    engine = Engine(loop, "NativeLlama" if loop == "static" else "transformers", "top candidates, else a full sort",
                    False, False, batch_invariant_rows=4)
    expected = alone(LOOPS[loop], model, prompts, settings, uniforms)
    batch = batches(len(settings), 11, 3)[0]
    drawn = decode(engine, model, prompts.rows(batch), settings.rows(batch), uniforms[batch], NEW)
    for index, row in enumerate(batch.tolist()):
        assert_row_is_alone(drawn, index, expected[row])


class CountingNative:
    """A native forward that records the shape of the ids of every call."""

    def __init__(self, native):
        self.native, self.calls = native, []

    def __getattr__(self, name):
        return getattr(self.native, name)

    def __call__(self, ids, *args):
        self.calls.append(tuple(ids.shape))
        return self.native(ids, *args)


def test_each_distinct_prompt_runs_its_prefix_once():
    model, (prompts, settings, uniforms) = MODELS["gpt2"](), study()
    shapes = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)
    generate(model, prompts, settings, uniforms, 3)
    hook.remove()
    assert shapes == [(4, 9), (20, 1), (20, 1)]  # the four prompts once, left-padded; then one token per row
    native = CountingNative(native_model(model))
    generate_static(model, prompts, settings, uniforms, 3, native=native)
    assert native.calls == [(4, 8), (20, 1), (20, 1), (20, 1)]  # all but each prompt's last token, once


def test_a_prompt_batch_keeps_the_prompts_its_rows_continue_in_order_of_first_use():
    prompts = PromptBatch.of([[1, 2], [3], [1, 2], [4, 5, 6], [3]])
    assert [p.tolist() for p in prompts.ids] == [[1, 2], [3], [4, 5, 6]] and prompts.of_row.tolist() == [0, 1, 0, 2, 1]
    picked = prompts.rows(torch.tensor([3, 1, 4]))
    assert [p.tolist() for p in picked.ids] == [[4, 5, 6], [3]] and picked.of_row.tolist() == [0, 1, 1]
    assert prompts.rows(slice(0, 1)).ids[0].tolist() == [1, 2] and len(prompts.rows(slice(0, 1)).ids) == 1
    assert picked.padded(5).of_row.tolist() == [0, 1, 1, 1, 1]
    ids, real = prompts.left_padded()
    assert ids.tolist() == [[0, 1, 2], [0, 0, 3], [4, 5, 6]]
    assert real.tolist() == [[False, True, True], [False, False, True], [True, True, True]]
    single = PromptBatch.single([9, 8], 3)
    assert [p.tolist() for p in single.ids] == [[9, 8]] and single.of_row.tolist() == [0, 0, 0]


def test_step_k_reads_the_uniform_of_its_absolute_position():
    vector = torch.arange(10, dtype=torch.float32) / 10
    assert step_uniforms(vector, 3, 4).tolist() == pytest.approx([0.2, 0.3, 0.4, 0.5])  # u[3 + k - 1]
    prompts, uniforms = one_prompt([5], vector, 2, 10)
    assert uniforms.shape == (2, 10) and uniforms[1].tolist() == vector.tolist()
    with pytest.raises(ValueError, match="do not reach"):
        step_uniforms(vector, 3, 9)
