"""The static decode loop (native forwards, fixed-shape step) against the generic loop, on the CPU."""
import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from conftest import single_prompt, tiny_gpt2, tiny_llama
from reference import SAFE_MARGIN, reference_pick
from gpt2_sweep.decoding.decoder import AutocastForward, compiled_step
from gpt2_sweep.decoding.engines import Engine, choose_engine, decode, generate_static
from gpt2_sweep.decoding.generation import generate
from gpt2_sweep.decoding.native_models import native_model
from gpt2_sweep.decoding.prompts import PromptBatch
from gpt2_sweep.decoding.sampling import RowSettings, sample_step, shared_uniforms
from gpt2_sweep.decoding.static_decode import DecodeState, bucket, prefill
from gpt2_sweep.decoding.threshold_search import search_step

TEMPERATURES = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 0.8])
NUCLEI = torch.tensor([1.0, 0.9, 0.5, 1.0, 0.99, 1.0, 0.0])  # greedy rows, nucleus 0 and 1
SETTINGS = RowSettings(TEMPERATURES, NUCLEI)


MODELS = {"gpt2": lambda: tiny_gpt2(3000, seed=1), "llama": tiny_llama}  # more tokens than candidates


def rounding_decides(model, prompt_ids, generated, step, uniforms, settings, row) -> tuple[float, float]:
    """The float64 rule's margins at generated step `step` of a row (u to a cumulative boundary, a
    filter's value to its boundary), from the model's logits after the prompt and generated[:step]."""
    with torch.no_grad():
        ids = torch.cat([torch.as_tensor(prompt_ids), generated[:step]])
        logits = model(input_ids=ids.unsqueeze(0)).logits[0, -1]
    top_k = int(settings.top_ks[row]) if settings.top_ks is not None else 0
    min_p = float(settings.min_ps[row]) if settings.min_ps is not None else 0.0
    _, u_margin, filter_margin = reference_pick(logits.numpy(), float(settings.temperatures[row]),
                                                float(settings.nuclei[row]), float(uniforms[step]), top_k, min_p)
    return u_margin, filter_margin


def assert_same_samples(static, generic, model, arguments):
    """The same samples up to float32 rounding: the native forward adds in another order than
    transformers' (and the inductor-compiled sampler rounds its softmax its own way), so where a row's
    tokens part, u or a filter's value lies within that rounding of a boundary of the float64 rule
    (checked with the model). Up to there the statistics agree, a support size exactly unless the
    filter's boundary lies within rounding. This holds for every seed; how many rows part does not.
    arguments: the batch's (prompts, settings, uniforms, new_tokens)."""
    prompts, settings, uniforms, _ = arguments
    assert static.tokens.shape == generic.tokens.shape and static.logprobs.shape == generic.logprobs.shape
    for row in range(len(static.tokens)):
        def margins(step):
            return rounding_decides(model, prompts.row_ids(row), generic.tokens[row], step, uniforms[row], settings, row)
        parted = (static.tokens[row] != generic.tokens[row]).nonzero().flatten().tolist()
        end = parted[0] if parted else static.tokens.shape[1]
        if parted:
            assert min(margins(end)) < 1e-4, (row, end)
        torch.testing.assert_close(static.logprobs[row, :end], generic.logprobs[row, :end], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(static.entropies[row, :end], generic.entropies[row, :end], rtol=1e-4, atol=1e-4)
        sizes_differ = (static.support_sizes[row, :end] != generic.support_sizes[row, :end]).nonzero().flatten()
        for step in sizes_differ.tolist():
            assert margins(step)[1] < 1e-4, (row, step)


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("prompt", [[0], [5, 17, 300, 9]], ids=["bos", "prompt"])
def test_static_loop_gives_the_generic_loops_samples(family, prompt):
    model = MODELS[family]()
    arguments = single_prompt(prompt, SETTINGS, shared_uniforms(4, 39), 40)
    generic = generate(model, *arguments)
    assert_same_samples(generate_static(model, *arguments), generic, model, arguments)
    assert len(set(map(tuple, generic.tokens.tolist()))) >= 4  # the settings do change the text


@pytest.mark.parametrize("family", MODELS)
def test_a_stop_token_ends_rows_and_the_run_as_in_the_generic_loop(family):
    model, arguments = MODELS[family](), single_prompt([5, 17], SETTINGS, shared_uniforms(2, 39), 40)
    free = generate(model, *arguments).tokens
    for stop in (free[2, 2].item(), free[0, 1].item()):
        generic = generate(model, *arguments, stop_token_id=stop)
        assert_same_samples(generate_static(model, *arguments, stop), generic, model, arguments)


def test_static_loop_tokens_do_not_depend_on_the_batch():
    model, prompt, uniforms = tiny_llama(), [5, 17], shared_uniforms(3, 39)
    whole = generate_static(model, *single_prompt(prompt, SETTINGS, uniforms, 40)).tokens
    for group in ([0], [6, 1, 3], [5, 4, 2, 0, 1, 3]):
        assert torch.equal(generate_static(model, *single_prompt(prompt, SETTINGS.rows(group), uniforms, 40)).tokens,
                           whole[group])


@pytest.mark.parametrize("family", MODELS)
def test_native_forward_gives_the_models_logits(family):
    model = MODELS[family]()
    native = native_model(model)
    ids = torch.tensor([[5, 17, 300, 9, 41]])
    state = DecodeState.allocate(native, *single_prompt(ids[0], RowSettings(torch.ones(1), torch.ones(1)),
                                                        shared_uniforms(0, 9), 10), None, "cpu")
    with torch.inference_mode():
        ours = native(ids, torch.arange(5), state.cache, bucket(5))
        torch.testing.assert_close(ours, model(input_ids=ids).logits[:, -1], rtol=0, atol=1e-4)


@pytest.mark.parametrize("prompt_length, new_tokens, width", [(1, 64, 64), (3, 62, 64), (1, 65, 128), (40, 10, 64)])
def test_the_cache_is_as_wide_as_the_last_step_reads_rounded_to_a_bucket(prompt_length, new_tokens, width):
    """Every attention length is a multiple of 64 (aligned masks on CUDA), and no wider than the last
    step reads: max_length 65 reads 64 columns, and its cache holds 64, not 128."""
    native = native_model(tiny_gpt2(3000, seed=1))
    settings = RowSettings(torch.ones(2), torch.ones(2))
    state = DecodeState.allocate(native, *single_prompt(list(range(1, prompt_length + 1)), settings,
                                                        shared_uniforms(0, prompt_length + new_tokens - 1),
                                                        prompt_length + new_tokens), None, "cpu")
    assert state.cache.keys.shape[3] == width
    assert bucket(prompt_length + new_tokens - 1) == width


MIXED_PROMPTS = PromptBatch.of([[5, 17, 300], [9], [5, 17, 300], [41, 8, 2, 77, 6], [9], [3, 4], [41, 8, 2, 77, 6]])


@pytest.mark.parametrize("prompts", ["one", "mixed"])
@pytest.mark.parametrize("family", MODELS)
def test_the_decode_step_compiles_as_one_graph(family, prompts):
    """The whole step as the decoder compiles it (forward under its autocast wrapper, sampler, writes),
    with fullgraph=True: no graph break, host synchronisation or data-dependent shape in the step,
    prompts of different lengths included (left-padded, each row with its own start)."""
    model = MODELS[family]()
    vector = shared_uniforms(1, 29)
    if prompts == "one":
        prompts, settings, uniforms, new_tokens = single_prompt([5, 17, 300], SETTINGS, vector, 30)
    else:
        prompts, settings, new_tokens = MIXED_PROMPTS, SETTINGS, 25
        uniforms = torch.stack([vector[len(prompts.row_ids(row)) - 1:][:new_tokens] for row in range(len(settings))])
    native = native_model(model)
    state = DecodeState.allocate(native, prompts, settings, uniforms, new_tokens, 7, "cpu")
    step, forward = compiled_step(backend="aot_eager"), AutocastForward(native, "cpu", torch.float32, False)
    max_length = state.tokens.shape[1]
    with torch.inference_mode():
        prefill(native, state)
        for position in range(state.prompt_length, max_length):
            step(forward, state, bucket(position), search_step)
    expected = generate(model, prompts, settings, uniforms, new_tokens, stop_token_id=7).tokens
    generated = state.tokens[:, state.prompt_length:]
    assert torch.equal(generated[:, :expected.shape[1]], expected)


@pytest.mark.slow
def test_the_inductor_compiled_sampler_gives_the_same_samples():
    model = tiny_gpt2(3000, seed=1)
    for seed in (5, 13, 21, 34):
        arguments = single_prompt([5, 17], SETTINGS, shared_uniforms(seed, 29), 30)
        generic = generate(model, *arguments)
        assert_same_samples(generate_static(model, *arguments, compiled=True), generic, model, arguments)


@pytest.mark.slow
def test_the_inductor_compiled_search_follows_the_eager_rule_up_to_its_softmax_rounding():
    """On the same logits: the compiled softmax may differ from the eager one in the last bit, and so
    a whole-number mass by one unit. Tokens and support sizes are then the eager rule's except where u
    or the nucleus value lies within that rounding of a boundary; log-probabilities and entropies agree
    to float32 rounding. Compiled once for every seed (7 rows, as above), static shapes as in the step."""
    compiled = torch.compile(search_step, fullgraph=True, dynamic=False)
    generator = torch.Generator().manual_seed(0)
    rows, compared = len(SETTINGS), 0
    for seed in range(60):
        logits = torch.randn(rows, 3000, generator=generator) * float(torch.empty(1).uniform_(1, 8, generator=generator))
        settings = RowSettings(torch.rand(rows, generator=generator) * 2, torch.rand(rows, generator=generator) * 1.2)
        uniforms = torch.rand(rows, generator=generator)
        ours, eager = compiled(logits, settings, uniforms), sample_step(logits, settings, uniforms)
        for row in range(rows):
            _, u_margin, nucleus_margin = reference_pick(logits[row].numpy(), float(settings.temperatures[row]),
                                                         float(settings.nuclei[row]), float(uniforms[row]))
            if min(u_margin, nucleus_margin) > SAFE_MARGIN:
                assert ours.tokens[row] == eager.tokens[row], (seed, row)
                compared += 1
            if nucleus_margin > SAFE_MARGIN:
                assert ours.support_sizes[row] == eager.support_sizes[row], (seed, row)
        torch.testing.assert_close(ours.logprobs, eager.logprobs, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.entropies, eager.entropies, rtol=0, atol=1e-5)
    assert compared > 0.9 * 60 * rows


def test_the_engine_follows_runtime_compile_and_the_model_family():
    gpt2 = tiny_gpt2(500)
    assert choose_engine(gpt2, "auto").loop == "dynamic"  # the CPU's eager loop measures faster
    assert choose_engine(gpt2, False).loop == "dynamic"
    engine = choose_engine(gpt2, True)
    assert (engine.loop, engine.model, engine.compiled, engine.cuda_graphs) == ("static", "NativeGPT2", True, False)
    assert choose_engine(tiny_llama(), True).model == "NativeLlama"
    opt = OPTForCausalLM(OPTConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                                   num_attention_heads=2, max_position_embeddings=32)).eval()
    assert choose_engine(opt, True).describe() == {"loop": "dynamic", "model": "transformers",
                                                   "sampler": "top candidates, else a full sort",
                                                   "compiled": False, "cuda_graphs": False,
                                                   "batch_invariant_rows": None}


def test_the_static_loop_applies_top_k_and_min_p_as_the_generic_loop():
    model, uniforms = tiny_gpt2(3000, seed=1), shared_uniforms(8, 29)
    settings = RowSettings(TEMPERATURES, NUCLEI, torch.tensor([0, 1, 3, 20, 0, 5, 2]),
                           torch.tensor([0.0, 0.0, 0.1, 0.02, 0.3, 0.0, 0.05]))
    arguments = single_prompt([5, 17], settings, uniforms, 30)
    generic = generate(model, *arguments)
    assert_same_samples(generate_static(model, *arguments), generic, model, arguments)
    assert not torch.equal(generic.tokens, generate(model, *single_prompt([5, 17], SETTINGS, uniforms, 30)).tokens)


@pytest.mark.parametrize("loop", ["static", "dynamic"])
def test_progress_is_reported_per_generated_token(loop):
    model, uniforms = tiny_gpt2(500), shared_uniforms(0, 11)
    engine = Engine(loop, "NativeGPT2" if loop == "static" else "transformers", "top candidates, else a full sort",
                    False, False)
    counted = []
    decode(engine, model, *single_prompt([5, 17], SETTINGS.rows(slice(0, 3)), uniforms, 12), on_step=counted.append)
    assert counted == [3] * 10  # three samples, ten new tokens each
