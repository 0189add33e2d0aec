"""gpt2_sweep: controlled sampling sweeps over Hugging Face causal LMs."""
import os

# MKL's reproducible mode makes each sample's float32 logits independent of the batch it runs in
# (see generation.MIN_DECODE_ROWS). It must be set before MKL's first use.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .divergence import Divergence, Pick, first_divergence  # noqa: E402,F401 - light: no torch

__version__ = "0.1.0"


def load(path):
    """A run dir, a multirun dir or a samples.json as a pandas DataFrame, one row per sample
    (see gpt2_sweep.analysis.load_samples)."""
    # pandas and the artifact reader load on first use: importing the package stays light.
    from .analysis import load_samples

    return load_samples(path)

