"""gpt2_sweep: controlled sampling sweeps over Hugging Face causal LMs.

The layers, each importing only those below it: decoding/ (the rule and the loops, torch only),
analysis/ (artifacts read as tables: pandas and matplotlib), runner/ (Hydra, Lightning and the
command line, on both). artifact.py is the file format they share.
"""
import os

# MKL's reproducible mode makes each sample's float32 logits independent of the batch it runs in
# (see decoding.generation.MIN_DECODE_ROWS). It must be set before MKL's first use.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
# Inductor's kernels cached under the user's cache (unless TORCHINDUCTOR_CACHE_DIR is set), before
# torch starts the compile workers that read it: later processes start warm.
from .decoding.compile_cache import persistent_compile_cache  # noqa: E402 - os and pathlib only

persistent_compile_cache()

from .analysis.divergence import Divergence, Pick, first_divergence  # noqa: E402,F401 - light: no torch

__version__ = "0.1.0"


def load(path, strict=False):
    """A run dir, a multirun dir or a samples.json as a pandas DataFrame, one row per sample
    (see gpt2_sweep.analysis.load.load_samples); an unreadable artifact under a dir is named in a
    warning and left out (attrs["unreadable"]), or with strict=True an error."""
    # pandas and the artifact reader load on first use: importing the package stays light.
    from .analysis.load import load_samples

    return load_samples(path, strict=strict)



def run_sweep(cfg, output_dir, overrides=()):
    """Generate every sample of a composed run config into output_dir; return samples.json's path
    (see gpt2_sweep.runner.sweep.run_sweep)."""
    from .runner.sweep import run_sweep as run  # torch, transformers: seconds to import

    return run(cfg, output_dir, overrides)
