"""Where inductor keeps what it compiled: a dir under the user's cache, so that later processes start warm."""
import os
from pathlib import Path


def inductor_cache_dir() -> Path:
    """inductor/ in the package's cache: $GPT2_SWEEP_CACHE (where the converted SmolLM2 goes too), else
    $XDG_CACHE_HOME/gpt2_sweep, else ~/.cache/gpt2_sweep."""
    if os.environ.get("GPT2_SWEEP_CACHE"):
        return Path(os.environ["GPT2_SWEEP_CACHE"]) / "inductor"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpt2_sweep" / "inductor"


def persistent_compile_cache() -> str:
    """Point inductor at inductor_cache_dir() unless the user set TORCHINDUCTOR_CACHE_DIR (its own
    default, under /tmp, is wiped with the machine or the job). Call before the first compile;
    returns the dir in use."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
