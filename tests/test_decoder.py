"""The static loop over a run's batches (decoder.py): one state and one compiled step reused, the
attention it runs, and runtime.batch_invariant's blocks through it."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

import gpt2_sweep.decoding.static_decode
from conftest import REPO, artifact, compose_config, single_prompt, tiny_gpt2, tiny_llama
from gpt2_sweep.decoding.compile_cache import persistent_compile_cache
from gpt2_sweep.decoding.engines import Engine, choose_engine, decode, decoder_for, generate_static, invariant_rows
from gpt2_sweep.decoding.generation import MIN_DECODE_ROWS
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms
from gpt2_sweep.runner.sweep import run_sweep

SETTINGS = RowSettings(torch.linspace(0.0, 1.5, 16), torch.linspace(0.3, 1.0, 16))
STATIC_EAGER = Engine("static", "NativeGPT2", "top candidates, else a full sort", False, False)


def test_a_partial_batch_reuses_the_state_and_gives_its_own_samples():
    """The decoder keeps one state for batches of one layout: a later, smaller batch is padded to its
    rows, and every batch's samples are those of a fresh decoder."""
    model, uniforms = tiny_gpt2(3000, seed=1), shared_uniforms(2, 19)
    decoder = decoder_for(STATIC_EAGER, model)
    for rows in (slice(0, 8), slice(8, 16), slice(3, 8)):
        batch = single_prompt([5, 17], SETTINGS.rows(rows), uniforms, 20)
        reused = decode(STATIC_EAGER, model, *batch, decoder=decoder)
        fresh = generate_static(model, *batch)
        for name in ("tokens", "logprobs", "entropies", "support_sizes"):
            assert torch.equal(getattr(reused, name), getattr(fresh, name)), (rows, name)
    assert decoder.allocations == 1


@pytest.mark.slow
def test_a_compiled_run_of_several_batches_allocates_and_compiles_once(tiny_model_dir, tmp_path, monkeypatch):
    """batch_size=6 of 16 samples: batches of 6, 6 and 4 rows, one attention bucket (max_length 12):
    one decode state and one compiled graph for the run (test_a_partial_batch_reuses_the_state... shows
    that a reused state gives each batch's own samples)."""
    allocate = gpt2_sweep.decoding.static_decode.DecodeState.allocate.__func__
    allocations = []

    def counted(cls, *arguments, **options):
        allocations.append(len(arguments[2]))
        return allocate(cls, *arguments, **options)
    monkeypatch.setattr(gpt2_sweep.decoding.static_decode.DecodeState, "allocate", classmethod(counted))

    def run(name, batch_size):
        run_sweep(compose_config(f"model.name={tiny_model_dir}", "devices=cpu", "runtime.compile=true",
                                 "num_samples=16", "max_length=12", f"batch_size={batch_size}", "print_samples=0"),
                  tmp_path / name)
        return [sample["tokens"] for sample in artifact(tmp_path / name)["texts"]]
    graphs = counters["stats"]["unique_graphs"]
    assert len(run("batches", 6)) == 16
    assert allocations == [6]
    assert counters["stats"]["unique_graphs"] - graphs <= 1  # none if this process compiled the layout before


def test_the_mask_is_built_once_per_step_in_the_querys_dtype_and_grouped_heads_read_the_cache_as_is(monkeypatch):
    """Llama-style grouped-query attention (6 query heads, 2 kv heads): SDPA gets the cache's 2 heads
    (no repeat), one mask object for every layer of a forward, in the dtype of the query and keys, and
    runs with the math fall-back switched off."""
    calls = []
    real = F.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **options):
        calls.append((query.dtype, key.shape[1], attn_mask, options.get("enable_gqa", False),
                      torch.backends.cuda.math_sdp_enabled()))
        return real(query, key, value, attn_mask=attn_mask, **options)
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = tiny_llama(500)
    for precision in (torch.float32, torch.bfloat16):
        calls.clear()
        generate_static(model.to(precision), *single_prompt([5, 17], SETTINGS.rows(slice(0, 4)),
                                                            shared_uniforms(1, 9), 10))
        layers = model.config.num_hidden_layers
        assert len(calls) == layers * 9  # the prompt's forward (one position), then 8 steps
        for first in range(0, len(calls), layers):
            forward = calls[first:first + layers]
            assert all(mask is forward[0][2] for _, _, mask, _, _ in forward)
        for dtype, kv_heads, mask, gqa, math in calls:
            assert (dtype, mask.dtype, kv_heads, gqa, math) == (precision, precision, 2, False, False)


def test_the_block_plan_runs_the_whole_batch_where_the_plain_path_is_invariant():
    """runtime.batch_invariant: no blocks on the CPU in float32 (MKL's reproducible mode, batches padded
    to MIN_DECODE_ROWS); blocks of MIN_DECODE_ROWS in other dtypes there, of 64 on CUDA."""
    assert invariant_rows("cpu", torch.float32) is None
    assert invariant_rows("cpu", torch.bfloat16) == invariant_rows("cpu", torch.float64) == MIN_DECODE_ROWS
    assert invariant_rows("cuda", torch.float32) == invariant_rows("cuda", torch.bfloat16) == 64
    model = tiny_gpt2(500)
    assert choose_engine(model, False, batch_invariant=True).batch_invariant_rows is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16-mixed: the products in bfloat16
        assert choose_engine(model, False, batch_invariant=True).batch_invariant_rows == MIN_DECODE_ROWS
    seen = []
    engine = choose_engine(model, False, batch_invariant=True)
    plain = decoder_for(engine, model)

    def recording(prompts, settings, *arguments, **options):
        seen.append(len(settings))
        return plain(prompts, settings, *arguments, **options)
    settings = RowSettings(torch.ones(64), torch.ones(64))
    decode(engine, model, *single_prompt([5], settings, shared_uniforms(0, 3), 4), decoder=recording)
    assert seen == [64]


def test_the_inductor_cache_goes_under_the_users_cache_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("GPT2_SWEEP_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert persistent_compile_cache() == str(tmp_path / "xdg" / "gpt2_sweep" / "inductor")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "xdg" / "gpt2_sweep" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert persistent_compile_cache() == str(tmp_path / "mine")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert persistent_compile_cache() == str(tmp_path / "home" / ".cache" / "gpt2_sweep" / "inductor")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("GPT2_SWEEP_CACHE", str(tmp_path / "ours"))
    assert persistent_compile_cache() == str(tmp_path / "ours" / "inductor")


INVARIANT_TOKENS = """
import gpt2_sweep  # first, as run.py imports it: it points inductor at the user's cache
import json, sys, torch
sys.path.insert(0, "tests")
from conftest import single_prompt, tiny_gpt2
from gpt2_sweep.decoding.engines import choose_engine, decode
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms
model = tiny_gpt2(3000, seed=1).to(torch.bfloat16)
settings = RowSettings(torch.linspace(0.5, 1.5, 10), torch.linspace(0.5, 1.0, 10))
vector = shared_uniforms(4, 11)
if sys.argv[1] == "after another batch size":
    decode(choose_engine(model, True), model, *single_prompt([5, 17], settings.rows(slice(0, 7)), vector, 12))
engine = choose_engine(model, True, batch_invariant=True)
drawn = decode(engine, model, *single_prompt([5, 17], settings, vector, 12))
from torch._dynamo.utils import counters
print(json.dumps([drawn.tokens.tolist(), drawn.logprobs.tolist(), dict(counters["inductor"])]))
"""


@pytest.mark.slow
def test_batch_invariant_blocks_run_the_same_compiled_step_whatever_the_process_decoded_before(tmp_path):
    """bfloat16 on the CPU, blocks of MIN_DECODE_ROWS rows, compiled. A process first decodes a batch
    of 7, then the mode; a second process only the mode. The second gives the same samples and
    compiles nothing: every graph it needs is in the inductor cache the first one left under
    XDG_CACHE_HOME, so the first ran the blocks through the same static-shape step."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None), env.pop("GPT2_SWEEP_CACHE", None)

    def samples(mode):
        done = subprocess.run([sys.executable, "-c", INVARIANT_TOKENS, mode], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])
    tokens, logprobs, _ = samples("after another batch size")
    assert any((tmp_path / "cache" / "gpt2_sweep" / "inductor").iterdir())
    fresh_tokens, fresh_logprobs, compiled = samples("fresh")
    assert (fresh_tokens, fresh_logprobs) == (tokens, logprobs)
    assert compiled.get("fxgraph_cache_hit", 0) >= 1 and compiled.get("fxgraph_cache_miss", 0) == 0, compiled
