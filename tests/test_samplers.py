"""The static loop's samplers (runtime.sampler): each gives exactly the rule's step, and a run through
each gives the eager loop's tokens."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import artifact, compose_config
from gpt2_sweep.decoding.samplers import SAMPLERS, sampler_step
from gpt2_sweep.decoding.sampling import RowSettings, sample_step
from gpt2_sweep.runner.sweep import run_sweep

# triton's tests: under its interpreter on the CPU (conftest sets TRITON_INTERPRET=1 there), else on CUDA.

# Each row's settings: greedy, a tiny temperature, nucleus 0 and 1, top_k beyond the vocabulary.
TEMPERATURES = [0.0, 0.3, 1.0, 1.5, 1e-6, 0.8, 2.0, 1.0]
NUCLEI = [1.0, 0.5, 0.95, 1.0, 0.2, 0.0, 0.99, 0.7]
TOP_KS = [0, 1, 5, 0, 70, 3000, 2, 3]
MIN_PS = [0.0, 0.05, 0.0, 0.3, 0.01, 0.0, 1.0, 0.1]


def assert_same_step(ours, rule):
    assert torch.equal(ours.tokens, rule.tokens)
    assert torch.equal(ours.logprobs, rule.logprobs) and torch.equal(ours.entropies, rule.entropies)
    assert torch.equal(ours.support_sizes, rule.support_sizes)


def check_against_the_rule(name, seed, vocab, scale, ties, dtype, filters, uniforms):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(len(TEMPERATURES), vocab, generator=generator) * scale).to(dtype)
    if ties:  # many equal logits: ties at every rank, the top included
        logits = (logits * 2).round() / 2
    row_settings = RowSettings(torch.tensor(TEMPERATURES), torch.tensor(NUCLEI),
                               torch.tensor(TOP_KS) if filters else None, torch.tensor(MIN_PS) if filters else None)
    step = sampler_step(name)
    for uniform in uniforms:
        assert_same_step(step(logits, row_settings, uniform), sample_step(logits, row_settings, uniform))
    per_row = torch.rand(len(TEMPERATURES), generator=generator)  # one u per row
    assert_same_step(step(logits, row_settings, per_row), sample_step(logits, row_settings, per_row))


CASES = dict(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.5, 3.0, 12.0]), ties=st.booleans(),
             dtype=st.sampled_from([torch.float32, torch.bfloat16]), filters=st.booleans())


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name != "triton"])
@settings(max_examples=15, deadline=None)
@given(vocab=st.integers(2, 2000), **CASES)
def test_each_torch_sampler_gives_the_rules_step(name, seed, vocab, scale, ties, dtype, filters):
    """Tokens, log-probabilities, entropies and support sizes exactly the rule's (sampling.sample_step)."""
    check_against_the_rule(name, seed, vocab, scale, ties, dtype, filters, (0.0, 0.37, 0.999, 1 - 2**-24))


@pytest.mark.slow  # the interpreter runs each kernel's program in Python: about a second a call
@settings(max_examples=5, deadline=None)
@given(vocab=st.sampled_from([2, 7, 300, 1100]), **CASES)  # 1100: rows longer than the kernel's block
def test_the_triton_sampler_gives_the_rules_step_under_the_interpreter(seed, vocab, scale, ties, dtype, filters):
    pytest.importorskip("triton")
    check_against_the_rule("triton", seed, vocab, scale, ties, dtype, filters, (1 - 2**-24,))


def test_the_triton_sampler_settles_ties_by_token_id_like_the_sort():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 3.0]] * 4)  # three tokens share the top
    row_settings = RowSettings(torch.ones(4), torch.tensor([0.0, 0.5, 0.9, 1.0]), torch.tensor([0, 2, 0, 4]))
    pytest.importorskip("triton")
    for uniform in (0.0, 0.2, 0.4, 0.7, 0.95):
        assert_same_step(sampler_step("triton")(logits, row_settings, uniform), sample_step(logits, row_settings, uniform))


@pytest.fixture(scope="module")
def eager_run(tiny_model_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("eager")
    run_sweep(compose_config(*RUN, f"model.name={tiny_model_dir}", "runtime.compile=false"), directory)
    return artifact(directory)


RUN = ("devices=cpu", "sampler=both", "sampler.top_k=true", "num_samples=6", "max_length=10", "print_samples=0")


@pytest.mark.slow  # an inductor compile of each sampler
@pytest.mark.parametrize("name", SAMPLERS)
def test_a_compiled_run_through_each_sampler_gives_the_eager_loops_tokens(tiny_model_dir, tmp_path, eager_run, name):
    if name == "triton":
        pytest.importorskip("triton")
    run_sweep(compose_config(*RUN, f"model.name={tiny_model_dir}", "runtime.compile=true", f"runtime.sampler={name}"),
              tmp_path)
    document = artifact(tmp_path)
    assert document["metadata"]["engine"]["sampler"] == name and document["metadata"]["engine"]["compiled"]
    assert eager_run["metadata"]["engine"]["loop"] == "dynamic"
    assert [s["tokens"] for s in document["texts"]] == [s["tokens"] for s in eager_run["texts"]]


def test_the_engine_names_the_sampler_runtime_sampler_chose(caplog):
    from conftest import tiny_gpt2
    from gpt2_sweep.decoding.engines import choose_engine

    model = tiny_gpt2(500)
    assert choose_engine(model, True).sampler == "search"  # auto on the CPU: the faster there, measured
    assert [choose_engine(model, True, sampler=name).sampler for name in SAMPLERS] == list(SAMPLERS)
    generic = choose_engine(model, False, sampler="search")  # the CPU's eager loop: the generic one
    assert generic.sampler == "top candidates, else a full sort" and "runtime.sampler=search" in caplog.text


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name != "triton"])
def test_compiled_samplers_leave_their_cumulative_sums_to_aten(name):
    """torch 2.11's inductor fails on CUDA to generate the split scan of a vocabulary-long row at small
    batches (decoding/scans.py): the graph dynamo hands to inductor holds no cumsum of its own."""
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    row_settings = RowSettings(torch.tensor(TEMPERATURES), torch.tensor(NUCLEI), torch.tensor(TOP_KS),
                               torch.tensor(MIN_PS))
    logits = torch.randn(len(TEMPERATURES), 500)
    compiled = torch.compile(sampler_step(name), backend=recording_backend, fullgraph=True)
    assert_same_step(compiled(logits, row_settings, 0.37), sample_step(logits, row_settings, 0.37))
    targets = [str(node.target) for graph in graphs for node in graph.graph.nodes if node.op != "placeholder"]
    assert any("row_cumsum" in target for target in targets)
    assert not any("cumsum" in target and "row_cumsum" not in target for target in targets), targets


def test_auto_follows_the_measurements_and_falls_back_to_sort_without_triton(monkeypatch):
    import importlib.util

    from gpt2_sweep.decoding.samplers import CANDIDATES, chosen_sampler

    assert (chosen_sampler("auto", True, cuda=True), chosen_sampler("auto", True, cuda=False)) == ("triton", "search")
    assert chosen_sampler("auto", False, cuda=True) == CANDIDATES and chosen_sampler("sort", True, cuda=True) == "sort"
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else find_spec(name, *a))
    assert chosen_sampler("auto", True, cuda=True) == "sort"
