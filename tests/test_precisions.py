"""Every Lightning precision the CPU takes, through the Trainer, on the generic loop and the static one."""
import math

import pytest
import torch
from lightning.pytorch.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision

from conftest import artifact, compose_config, single_prompt, tiny_gpt2, tiny_llama
from test_static_decode import SETTINGS
from gpt2_sweep.decoding.engines import Engine, decode
from gpt2_sweep.decoding.sampling import shared_uniforms
from gpt2_sweep.runner.sweep import run_sweep

# precision: (the weights' dtype, the forward's products' dtype), as the artifact names them
PRECISIONS = {"32-true": ("float32", "float32"), "64-true": ("float64", "float64"),
              "bf16-true": ("bfloat16", "bfloat16"), "16-true": ("float16", "float16"),
              "bf16-mixed": ("float32", "bfloat16")}
MAX_LENGTH = 12


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """run(precision, compile): the artifact of that run on the CPU (each run once per module)."""
    done = {}

    def run(precision, compile):
        if (precision, compile) not in done:
            directory = tmp_path_factory.mktemp(f"{precision}-{compile}")
            run_sweep(compose_config(f"model.name={tiny_model_dir}", "devices=cpu", f"devices.precision={precision}",
                                     f"runtime.compile={str(compile).lower()}", "sampler=temperature",
                                     "num_samples=4", f"max_length={MAX_LENGTH}", "print_samples=0"), directory)
            done[precision, compile] = artifact(directory)
        return done[precision, compile]
    return run


# Each compiled case pays an inductor compile for its logits' dtype (seconds): bf16-mixed's, which takes
# every path at once (Lightning's autocast, the static loop, the compiled sampler), stays in the fast suite.
CASES = [(precision, compile) if precision == "bf16-mixed" or not compile
         else pytest.param(precision, compile, marks=pytest.mark.slow)
         for precision in PRECISIONS for compile in (False, True)]


@pytest.mark.parametrize("precision, compile", CASES, ids=lambda value: {False: "eager", True: "compiled"}.get(value, value))
def test_every_precision_runs_and_the_artifact_says_in_which_dtypes(runs, precision, compile):
    document = runs(precision, compile)
    metadata = document["metadata"]
    assert (metadata["dtype"], metadata["compute_dtype"]) == PRECISIONS[precision]
    assert metadata["engine"]["loop"] == ("static" if compile else "dynamic")
    for sample in document["texts"]:
        assert len(sample["tokens"]) == MAX_LENGTH
        assert len(sample["token_logprobs"]) == MAX_LENGTH - sample["prompt_tokens"]
        assert all(math.isfinite(value) and value <= 0 for value in sample["token_logprobs"])
        assert math.isfinite(sample["metrics"]["mean_entropy"])
    if compile and precision in ("32-true", "64-true"):  # 16-bit rounding may part them at a near tie
        assert [s["tokens"] for s in document["texts"]] == [s["tokens"] for s in runs(precision, False)["texts"]]

# Each plugin as the Trainer sets it up on the CPU: the weights converted, predict_step in its context.
PLUGINS = {"64-true": DoublePrecision, "bf16-true": lambda: HalfPrecision("bf16-true"),
           "16-true": lambda: HalfPrecision("16-true"), "bf16-mixed": lambda: MixedPrecision("bf16-mixed", "cpu")}
STATIC_EAGER = Engine("static", "native", "top candidates, else a full sort", False, False)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("precision", PLUGINS)
def test_the_static_loop_with_the_eager_sampler_runs_under_every_precision(precision, family):
    """The loop CUDA takes with runtime.compile=false. Its samples are the model's: each token's
    log-probability is the one the model's own forward gives it, to the rounding of the dtype (under
    autocast Llama's rotary makes float32 keys, which the cache keeps in bfloat16)."""
    plugin = PLUGINS[precision]()
    model = plugin.convert_module(tiny_gpt2(500, seed=1) if family == "gpt2" else tiny_llama(500))
    prompt = torch.tensor([5, 17, 300])
    batch = single_prompt(prompt, SETTINGS, shared_uniforms(3, 15), 16)
    with plugin.forward_context():
        static = decode(STATIC_EAGER, model, *batch)
        with torch.inference_mode():
            sequences = torch.cat([prompt.expand(len(SETTINGS), -1), static.tokens], dim=1)
            logits = model(input_ids=sequences).logits[:, len(prompt) - 1:-1].double()
    assert static.tokens.shape == (len(SETTINGS), 16 - len(prompt)) and static.logprobs.dtype == torch.float32
    model_logprobs = logits.log_softmax(dim=-1).gather(-1, static.tokens[:, :, None]).squeeze(-1)
    tolerance = 1e-5 if precision == "64-true" else 0.2  # a few units in the last place of 16-bit logits
    torch.testing.assert_close(static.logprobs.double(), model_logprobs, rtol=0, atol=tolerance)
    assert bool(static.entropies.isfinite().all())
    if precision == "bf16-mixed":  # the products ran in bfloat16, as the precision asks, not in float32
        assert not torch.equal(static.logprobs, decode(STATIC_EAGER, model, *batch).logprobs)
