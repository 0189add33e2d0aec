"""The decode loop against a plain loop that recomputes every step without a cache."""
import torch
import torch.nn.functional as F

from conftest import single_prompt
from gpt2_sweep.decoding.generation import MIN_DECODE_ROWS, CausalLM, TransposedHead, generate
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms
from gpt2_sweep.runner.records import cut_at_stop
from gpt2_sweep.runner.sweep import start_ids
from reference import SAFE_MARGIN, reference_pick

TEMPERATURES = torch.tensor([0.0, 0.3, 0.7, 1.0, 1.2, 1.0])
NUCLEI = torch.tensor([0.0, 0.5, 0.9, 1.0, 1.0, 0.2])
SETTINGS = RowSettings(TEMPERATURES, NUCLEI)


def reference_generate(model, prompt_ids, temperature, nucleus, uniforms, max_length):
    """One sample, the whole sequence re-run each step, picks by the float64 reference.

    Returns the tokens up to the first step whose pick rounding could decide, and whether it ran
    to the end without meeting one."""
    tokens = list(prompt_ids)
    with torch.no_grad():
        for position in range(len(prompt_ids), max_length):
            logits = model(input_ids=torch.tensor([tokens])).logits[0, -1]
            token, u_margin, nucleus_margin = reference_pick(logits.numpy(), temperature, nucleus,
                                                             float(uniforms[position - 1]))
            if min(u_margin, nucleus_margin) <= SAFE_MARGIN:
                return tokens, False
            tokens.append(token)
    return tokens, True


def test_generate_matches_the_plain_reference_loop(tiny_model, tokenizer):
    prompt = tokenizer.encode("The quick brown")
    uniforms = shared_uniforms(7, 23)
    tokens = generate(tiny_model, *single_prompt(prompt, SETTINGS, uniforms, 24)).tokens
    assert tokens.shape == (6, 24 - len(prompt))  # the generated tokens only
    complete = 0
    for row, (t, p) in enumerate(zip(TEMPERATURES.tolist(), NUCLEI.tolist())):
        expected, ran_to_end = reference_generate(tiny_model, prompt, t, p, uniforms, 24)
        assert (prompt + tokens[row].tolist())[:len(expected)] == expected
        complete += ran_to_end
    assert complete >= 5
    assert len(set(map(tuple, tokens.tolist()))) >= 4  # the settings do change the text


def test_position_t_reads_uniform_t_minus_one(tiny_model, tokenizer):
    prompt = tokenizer.encode("A sweep over")
    uniforms = shared_uniforms(0, 15)
    temperatures, nuclei = torch.ones(4), torch.ones(4)
    settings = RowSettings(temperatures, nuclei)
    base = generate(tiny_model, *single_prompt(prompt, settings, uniforms, 16)).tokens
    first = len(prompt)  # the first generated position reads uniforms[first - 1]
    before = uniforms.clone()
    before[: first - 1] = 1 - before[: first - 1]  # positions inside the prompt draw nothing
    assert torch.equal(generate(tiny_model, *single_prompt(prompt, settings, before, 16)).tokens, base)
    changed = uniforms.clone()
    changed[first - 1] = (changed[first - 1] + 0.5) % 1
    other = generate(tiny_model, *single_prompt(prompt, settings, changed, 16)).tokens
    assert not torch.equal(other[:, 0], base[:, 0])


def test_tokens_do_not_depend_on_batch_size_or_grouping(tiny_model, tokenizer):
    prompt = torch.tensor(tokenizer.encode("Every sample"))
    uniforms = shared_uniforms(3, 29)
    whole = generate(tiny_model, *single_prompt(prompt, SETTINGS, uniforms, 30)).tokens
    for groups in ([[0], [1], [2], [3], [4], [5]], [[5, 0], [3, 1, 4], [2]], [[4, 2, 0, 1, 3, 5]]):
        for group in groups:
            part = generate(tiny_model, *single_prompt(prompt, SETTINGS.rows(group), uniforms, 30)).tokens
            assert torch.equal(part, whole[group]), group


def test_linear_rows_are_batch_invariant_from_the_minimum_decode_batch(every_core):
    """The property the decode loop relies on (MKL_CBWR strict mode, set by the package)."""
    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(70, 256, generator=generator), torch.randn(1024, 256, generator=generator)
    full = F.linear(x, w)
    for rows in range(MIN_DECODE_ROWS, 70, 7):
        assert torch.equal(F.linear(x[:rows], w), full[:rows]), rows


def test_stop_token_ends_each_row_and_generation(tiny_model, tokenizer):
    prompt = tokenizer.encode("The lazy")
    uniforms = shared_uniforms(1, 19)
    free = generate(tiny_model, *single_prompt(prompt, SETTINGS, uniforms, 20)).tokens
    stop = free[3, 2].item()  # a token row 3 produces
    stopped = generate(tiny_model, *single_prompt(prompt, SETTINGS, uniforms, 20), stop_token_id=stop).tokens
    for row in range(6):
        expected = cut_at_stop(prompt + free[row].tolist(), len(prompt), stop)
        assert cut_at_stop(prompt + stopped[row].tolist(), len(prompt), stop) == expected
    assert all(stop in row for row in stopped.tolist()) or stopped.shape[1] == 20 - len(prompt)


def test_cut_at_stop_keeps_the_first_generated_stop_token():
    assert cut_at_stop([9, 0, 5, 0, 7, 0], 2, 0) == [9, 0, 5, 0]
    assert cut_at_stop([9, 0, 5, 6], 2, 0) == [9, 0, 5, 6]
    assert cut_at_stop([9, 5], 1, None) == [9, 5]


def test_start_is_the_prompt_encoding_or_one_bos_or_eos(tokenizer):
    assert start_ids(tokenizer, "The fox") == tokenizer.encode("The fox")
    assert start_ids(tokenizer, None) == [tokenizer.bos_token_id]
    assert start_ids(tokenizer, "") == [tokenizer.bos_token_id]

    class NoBos:
        bos_token_id, eos_token_id = None, 7

        def encode(self, text):
            return []

    assert start_ids(NoBos(), None) == [7]


def test_the_candidate_path_generates_the_tokens_of_the_full_sort(tokenizer):
    """A vocabulary larger than the candidates, so that both paths of the sampler run."""
    from conftest import tiny_gpt2
    model = tiny_gpt2(3000, seed=1)
    prompt = [5, 17, 300]
    uniforms = shared_uniforms(4, 39)
    temperatures = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.5, 2.0])
    nuclei = torch.tensor([1.0, 0.9, 0.5, 1.0, 0.99, 1.0])
    arguments = single_prompt(prompt, RowSettings(temperatures, nuclei), uniforms, 40)
    for candidates in (4, 32, 256):
        fast = generate(model, *arguments, candidates=candidates)
        full = generate(model, *arguments, candidates=None)
        assert torch.equal(fast.tokens, full.tokens)
        assert torch.equal(fast.logprobs, full.logprobs) and torch.equal(fast.entropies, full.entropies)


def test_on_the_cpu_the_output_head_is_transposed_once_with_the_same_logits():
    from conftest import tiny_gpt2
    model, stock = tiny_gpt2(500, seed=3), tiny_gpt2(500, seed=3)
    CausalLM(model)
    head = model.get_output_embeddings()
    assert isinstance(head, TransposedHead)
    CausalLM(model)
    assert model.get_output_embeddings() is head
    assert model.state_dict().keys() == stock.state_dict().keys()  # save_pretrained writes the same
    ids = torch.randint(0, 500, (MIN_DECODE_ROWS, 1))
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, stock(input_ids=ids).logits)
