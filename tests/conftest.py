import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # before torch is first imported, as the package does
# runtime.sampler=triton's kernel runs on the CPU under triton's interpreter, which triton reads when it
# is first imported; where a GPU is, the kernel runs on it.
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import io
import json
import logging
import runpy
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import settings
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60)
settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
END_OF_TEXT = "<|endoftext|>"
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A sweep over temperature and nucleus values shows how decoding changes text.",
    "Language models write one token at a time, each drawn from a distribution.",
    "Every sample of a run shares one vector of uniform random numbers.",
    "Émoji 🦊 and quotes \" ' and 日本語 text must work too.",
] * 20


def train_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of a few hundred tokens, like GPT-2's but tiny."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=END_OF_TEXT,
                                   eos_token=END_OF_TEXT)


def tiny_gpt2(vocab_size: int, seed: int = 0, n_positions: int = 64) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=32, n_layer=2,
                        n_head=2, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger logits than the default init: peaked but not degenerate
        model.lm_head.weight.mul_(20)
    return model


def tiny_llama(vocab_size=3000, seed=0) -> LlamaForCausalLM:
    """A Llama-style model (grouped-query attention, rotary positions), random and tiny."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # peaked but not degenerate, like the GPT-2 fixture
    return model


def single_prompt(prompt, settings, vector, max_length):
    """decode()'s (prompts, settings, uniforms, new_tokens) for a batch that continues one prompt up
    to max_length tokens, the prompt counted, reading the one vector u: a single-prompt run's batch."""
    from gpt2_sweep.decoding.prompts import one_prompt
    new_tokens = max_length - len(prompt)
    prompts, uniforms = one_prompt(prompt, vector, len(settings), new_tokens)
    return prompts, settings, uniforms, new_tokens


@pytest.fixture
def every_core():
    """torch on all the machine's cores for one test: `make test` runs two workers of one thread
    each, and the batch-invariance tests must also see the multi-threaded kernels a run uses."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    return tiny_gpt2(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer, tiny_model):
    """A directory written by save_pretrained: what `model.name=<dir>` reads."""
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    tiny_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def run_cli(*overrides, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python run.py OVERRIDES` in a subprocess, as a user runs it (some seconds: each new process
    imports torch, transformers and Lightning)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(REPO / "run.py"), *map(str, overrides)],
                          cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def start_run(*overrides) -> subprocess.Popen:
    """`python run.py OVERRIDES` started in a subprocess, its output captured: for the signal tests.
    SIGINT at its default there, whatever this process inherited (a background job ignores it)."""
    return subprocess.Popen([sys.executable, str(REPO / "run.py"), *map(str, overrides)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def signal_when(process, signum, ready, timeout=180) -> tuple[int, str, str]:
    """Send signum as soon as ready() holds; the process's (exit code, stdout, stderr)."""
    deadline = time.time() + timeout
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before the signal could be sent"
    process.send_signal(signum)
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # the signal was lost: the run would go on after the test
        process.kill()
        process.communicate()
        raise
    return process.returncode, stdout, stderr


def compose_config(*overrides, hydra: bool = False):
    """The config `python run.py OVERRIDES` runs, composed in-process (with the hydra node if asked)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def artifact(directory) -> dict:
    return json.loads((Path(directory) / "samples.json").read_text(encoding="utf-8"))


def run_app(*arguments) -> subprocess.CompletedProcess:
    """`python run.py ARGUMENTS` in this process: the whole Hydra app, multiruns and their callbacks
    included, with the exit code it would end with, its stdout and stderr, but none of the seconds a
    new process spends importing. Hydra's logging set-up, sys.argv and HYDRA_FULL_ERROR are restored."""
    import gpt2_sweep.runner.interrupts

    argv, full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stdout, stderr = io.StringIO(), io.StringIO()
    sys.argv = [str(REPO / "run.py"), *map(str, arguments)]
    returncode = 0
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            runpy.run_path(str(REPO / "run.py"), run_name="__main__")
    except SystemExit as end:
        returncode = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    finally:
        sys.argv = argv
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        os.environ.pop("HYDRA_FULL_ERROR", None)
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
        gpt2_sweep.runner.interrupts._actions.clear()  # what the last run would have done on Ctrl-C
    return subprocess.CompletedProcess(sys.argv, returncode, stdout.getvalue(), stderr.getvalue())
