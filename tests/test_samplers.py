"""The static loop's samplers (runtime.sampler): each gives exactly the rule's step, and a run through
each gives the eager loop's tokens."""
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, artifact, compose_config
from gpt2_sweep.decoding.samplers import SAMPLERS, sampler_step
from gpt2_sweep.decoding.sampling import RowSettings, masses, sample_step
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


def edge_probabilities(dtype):
    """Probabilities at the masses' rounding edges: exact halves of a unit (to even, down and up), whole
    units, 0, 1, the denormals, the smallest normal, values around half a unit (2**-29), random ones."""
    units = torch.cat([torch.arange(0, 4096), torch.arange(2**28 - 4096, 2**28)]).to(dtype)
    tiny = torch.finfo(dtype).tiny
    edges = torch.tensor([0.0, 1.0, tiny, tiny / 2**10, tiny * (1 - torch.finfo(dtype).eps), 2**-29, 2**-30,
                          1.5 * 2**-30, 3 * 2**-30, 2**-31, 2**-40], dtype=dtype)
    around = torch.cat([torch.nextafter(edges[5:], torch.zeros((), dtype=dtype)),
                        torch.nextafter(edges[5:], torch.ones((), dtype=dtype))])
    generator = torch.Generator().manual_seed(0)
    uniform = torch.rand(20000, generator=generator, dtype=dtype)
    return torch.cat([(units + 0.5) * 2**-28, units * 2**-28, edges, around, uniform, uniform * 2**-24,
                      uniform ** 8, uniform * 2**-28])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kernel_counts_each_token_the_rules_whole_units_from_its_key(dtype):
    """The kernel reads no masses: it computes round_half_even(p * 2**28) from p's bits (sampling.masses)."""
    pytest.importorskip("triton")
    from gpt2_sweep.decoding.triton_select import kernel_masses

    probs = edge_probabilities(dtype)
    assert torch.equal(kernel_masses(probs), masses(probs).to(torch.int32))


@pytest.mark.slow  # the interpreter, as above
@pytest.mark.parametrize("shape, dtype", [("default", torch.float64), ("radix2", torch.float32),
                                          ("radix3-block256", torch.float64), ("radix7-block512", torch.float32),
                                          ("persistent1", torch.float64), ("persistent3-radix5", torch.float32)])
def test_each_kernel_shape_gives_the_rules_step(shape, dtype):
    """Other digit widths (the last pass overlapping bits already found, or not), blocks and programs
    that loop over rows (persistent1: one program for every row under the interpreter); float64 keys."""
    pytest.importorskip("triton")
    from gpt2_sweep.decoding.triton_select import KernelShape, triton_step

    generator = torch.Generator().manual_seed(3)
    logits = (torch.randn(len(TEMPERATURES), 700, generator=generator) * 3).to(dtype)
    logits[::2] = (logits[::2] * 2).round() / 2  # ties in every other row
    row_settings = RowSettings(torch.tensor(TEMPERATURES), torch.tensor(NUCLEI), torch.tensor(TOP_KS),
                               torch.tensor(MIN_PS))
    uniforms = torch.rand(len(TEMPERATURES), generator=generator)
    ours = triton_step(logits, row_settings, uniforms, KernelShape.named(shape))
    assert_same_step(ours, sample_step(logits, row_settings, uniforms))


@pytest.mark.slow  # the interpreter, as above
@pytest.mark.parametrize("shape", ["radix2-block64", "radix3-block64"])  # the default's last pass overlaps
def test_the_kernels_select_is_the_torch_selects_at_every_boundary(shape):
    """triton_reaching against threshold_search.reaching, on one row of keys at the limits around every
    cumulative mass in descending order; half the keys end in a digit of all ones (where the mass
    beyond the value found is carried from earlier passes), many tied, and with every mass 1."""
    pytest.importorskip("triton")
    from gpt2_sweep.decoding.threshold_search import reaching
    from gpt2_sweep.decoding.triton_select import KernelShape, triton_reaching

    generator = torch.Generator().manual_seed(4)
    keys = torch.randint(0x30000000, 0x3A000000, (30,), generator=generator, dtype=torch.int32)  # p < 2**-11
    keys[::2] |= 0x3F  # the last digit all ones
    keys = torch.cat([keys, keys[:10]])[torch.randperm(40, generator=generator)]  # ties
    token_masses = masses(keys.view(torch.float32)).to(torch.int32)
    cumulative = token_masses.sort(descending=True).values.cumsum(0)
    limits = torch.cat([cumulative, cumulative + 1, cumulative - 1]).clamp(1, int(cumulative[-1])).to(torch.int32)
    for unit in (False, True):
        rows = keys.expand(len(limits), -1) if not unit else keys.expand(40, -1)
        row_limits = limits if not unit else torch.arange(1, 41, dtype=torch.int32)
        ours = triton_reaching(rows, row_limits, 30, unit, *KernelShape.named(shape).launch())
        expected = reaching(rows, None if unit else token_masses.expand(len(limits), -1), row_limits, 30)
        assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])


COMPILE_FOR_SM90 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from gpt2_sweep.decoding.triton_kernels import masses_of, reach
from gpt2_sweep.decoding.triton_select import KernelShape
shapes = [KernelShape.named(name) for name in ("default", "radix2", "radix3-block512", "radix8-block256")]
for keys, bias, mantissa in (("i32", 127, 23), ("i64", 1023, 52)):
    for unit, shape in [(unit, shape) for unit in (False, True) for shape in shapes]:
        signature = {"keys_ptr": "*" + keys, "limits_ptr": "*i32", "tokens_ptr": "*i64", "values_ptr": "*" + keys,
                     "rows": "i32", "vocab": "i32", **dict.fromkeys(["KEY_BITS", "BIAS", "MANTISSA", "UNIT_MASSES",
                                                                     "RADIX", "BLOCK"], "constexpr")}
        constants = dict(KEY_BITS=30 if keys == "i32" else 62, BIAS=bias, MANTISSA=mantissa, UNIT_MASSES=unit,
                         RADIX=shape.radix_bits, BLOCK=shape.block)
        triton.compile(ASTSource(reach, signature, constants), target=GPUTarget("cuda", 90, 32))
    signature = {"keys_ptr": "*" + keys, "masses_ptr": "*i32", "count": "i32", "BIAS": "constexpr",
                 "MANTISSA": "constexpr", "BLOCK": "constexpr"}
    triton.compile(ASTSource(masses_of, signature, dict(BIAS=bias, MANTISSA=mantissa, BLOCK=1024)),
                   target=GPUTarget("cuda", 90, 32))
"""


@pytest.mark.slow  # a process of its own, where triton compiles instead of interpreting
def test_the_kernels_compile_for_a_gpu_without_one(tmp_path):
    """The interpreter runs code the compiler refuses (a `break` out of a loop, say): the
    kernels compiled for an H100/H200 (sm_90, through triton's own ptxas), float32 and float64 keys."""
    pytest.importorskip("triton")
    environment = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    environment.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    compiled = subprocess.run([sys.executable, "-c", COMPILE_FOR_SM90], cwd=REPO, env=environment,
                              capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr[-3000:]


def test_kernel_shapes_are_named_over_the_default():
    from gpt2_sweep.decoding.triton_select import KernelShape

    assert KernelShape.named("default") == KernelShape() == KernelShape(4, 1024, 0, 4)
    assert KernelShape.named("radix2-persistent4-warps8-block512") == KernelShape(2, 512, 4, 8)
    for bad in ("radix", "radix9", "block100", "persistant2", "radix2-", "radix8-block1024"):
        with pytest.raises(ValueError, match="radix"):
            KernelShape.named(bad)


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
