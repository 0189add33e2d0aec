"""Where inductor keeps what it compiled: a dir under the user's cache, so that later processes start warm."""
import os
from pathlib import Path


def inductor_cache_dir() -> Path:
    """$XDG_CACHE_HOME/gpt2_sweep/inductor, ~/.cache/gpt2_sweep/inductor without it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpt2_sweep" / "inductor"


def persistent_compile_cache() -> str:
    """Point inductor at inductor_cache_dir() unless the user set TORCHINDUCTOR_CACHE_DIR (its own
    default, under /tmp, is wiped with the machine or the job). Call before the first compile;
    returns the dir in use."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
