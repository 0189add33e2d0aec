"""A run's samples as they are made: one shard per batch in run_dir/.shards, written atomically, read
back to resume a killed run and, one group of samples at a time, to assemble the artifact."""
import io
import json
import logging
import shutil
from dataclasses import fields
from pathlib import Path

import torch

from ..artifact import config_differences, sample_neutral, write_bytes_atomic
from ..decoding.generation import Generated
from ..errors import UsageError
from .keys import default_config

log = logging.getLogger(__name__)
SHARD_DIR = ".shards"
SHARD_SUFFIX = ".pt"
TEMPORARY_SUFFIX = ".tmp"


def run_identity(config: dict, model: dict | None) -> dict:
    """What a shard must match to be part of this run: the resolved config, its sample-neutral keys
    aside (artifact.SAMPLE_NEUTRAL_KEYS), and the model's weights (loading.model_identity)."""
    return {"config": sample_neutral(config), "model": model}


def shard_name(indices: list[int]) -> str:
    """Named by its first and last sample: a run's shards hold disjoint samples, so names never clash."""
    return f"{indices[0]:09d}-{indices[-1]:09d}{SHARD_SUFFIX}"


def write_shard(directory: Path, identity: dict, indices: torch.Tensor, generated: Generated, drawn_with: dict) -> Path:
    """One batch's samples (indices ascending) and how they were drawn, written to a temporary file,
    flushed to disk, then renamed into place (artifact.write_bytes_atomic): a shard is whole or absent."""
    order = torch.argsort(indices)
    indices, generated = indices[order], generated.rows(order)
    path = directory / shard_name(indices.tolist())
    content = io.BytesIO()  # its size known before it is written: a full disk says what it needed
    torch.save({"identity": json.dumps(identity, sort_keys=True), "indices": indices,
                **{f.name: getattr(generated, f.name).contiguous() for f in fields(Generated)},
                "drawn_with": json.dumps(drawn_with)}, content)
    write_bytes_atomic(path, content.getvalue())
    return path


def read_shard(path: Path) -> dict:
    """A shard's content (drawn_with decoded; identity as written, canonical JSON); raises on a file
    that is not a shard."""
    shard = torch.load(path, weights_only=True, map_location="cpu")
    shard["drawn_with"] = json.loads(shard["drawn_with"])
    return shard


def remove_temporary_files(directory: Path) -> None:
    """What a shard write that was killed left: the finished shards stay."""
    for path in directory.glob(f".*{TEMPORARY_SUFFIX}"):
        path.unlink(missing_ok=True)


def clear(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class Shards:
    """The finished shards of this run in a dir: which samples they hold and how they were drawn."""

    def __init__(self, directory: Path, identity: dict, count: int):
        self.directory = directory
        self.identity = identity
        self.count = count
        self.paths: list[Path] = []
        self.owner = torch.full((count,), -1, dtype=torch.long)  # sample -> its shard in paths, -1: not drawn
        self.drawn_with: list[dict] = []
        self._open: dict[int, dict[int, Generated]] = {}  # shards being read: their rows not yet taken

    @classmethod
    def scan(cls, directory: Path, identity: dict, count: int) -> "Shards":
        """Every finished shard of this run (`count` samples). A shard of another run (config or model)
        is an error; one that cannot be read is removed with a warning, its samples drawn again."""
        shards = cls(directory, identity, count)
        for path, shard in readable_shards(directory):
            if not same_run(shard["identity"], identity):
                raise UsageError(refusal(directory, json.loads(shard["identity"]), identity))
            shards.add(path, shard["indices"], shard["drawn_with"])
        return shards

    def add(self, path: Path, indices: torch.Tensor, drawn_with: dict) -> None:
        if indices.numel() and (indices.max() >= self.count or (self.owner[indices] >= 0).any()):
            raise RuntimeError(f"{path}: samples outside this run or drawn twice")
        self.owner[indices] = len(self.paths)
        self.paths.append(path)
        self.drawn_with.append(drawn_with)

    def done(self) -> int:
        return int((self.owner >= 0).sum())

    def remaining(self) -> list[int]:
        """The samples no shard holds yet, in order."""
        return (self.owner < 0).nonzero().flatten().tolist()

    def how_drawn(self) -> dict:
        """The device, dtype, compute_dtype and engine of the first shard and, after an out-of-memory
        error, the smallest batch any batch went on with (else None)."""
        first = self.drawn_with[int(self.owner[0])] if self.count else {}
        backed_off = [drawn["max_rows"] for drawn in self.drawn_with if drawn.get("max_rows") is not None]
        return {"device": first.get("device"), "dtype": first.get("dtype"), "compute_dtype": first.get("compute_dtype"),
                "engine": first.get("engine"),
                "batch_size_after_out_of_memory": min(backed_off, default=None)}

    def samples(self, first: int, stop: int) -> list[Generated]:
        """Samples first to stop - 1, each a one-row Generated. Used in order, first to last: a shard is
        read when its first sample is asked for and dropped after its last, so memory holds the shards
        that overlap the samples asked for, not the run's."""
        wanted = self.owner[first:stop].tolist()
        if -1 in wanted:
            raise RuntimeError(f"sample {first + wanted.index(-1)} is in no shard")
        rows = []
        for index, number in enumerate(wanted, start=first):
            if number not in self._open:
                self._open[number] = self._rows_of(number)
            shard = self._open[number]
            rows.append(shard.pop(index))
            if not shard:
                del self._open[number]
        return rows

    def _rows_of(self, number: int) -> dict[int, Generated]:
        shard = read_shard(self.paths[number])
        generated = Generated(*(shard[f.name] for f in fields(Generated)))
        return {index: generated.rows(slice(row, row + 1)) for row, index in enumerate(shard["indices"].tolist())}


def readable_shards(directory: Path):
    """(path, content) of each shard in the dir, in name order; unreadable ones removed with a warning."""
    for path in sorted(directory.glob(f"*{SHARD_SUFFIX}")) if directory.is_dir() else []:
        try:
            shard = read_shard(path)
        except Exception as error:  # noqa: BLE001 - whatever makes a file unreadable, its samples are drawn again
            log.warning(f"{path} cannot be read ({type(error).__name__}): removed, its samples are drawn again")
            path.unlink(missing_ok=True)
            continue
        yield path, shard


def same_run(written: str, identity: dict) -> bool:
    """Whether a shard's identity (canonical JSON) is this run's: the same model, and the same config
    but for keys added to the package since the shard was written, at their defaults (as
    artifact.config_differences counts them)."""
    if written == json.dumps(identity, sort_keys=True):
        return True
    found = json.loads(written)
    return found.get("model") == identity["model"] and not config_differences(
        found.get("config") or {}, identity["config"], defaults=default_config())


def check_identity(directory: Path, identity: dict) -> None:
    """Refuse, in one line, a dir whose shards are another run's (checked on its first shard)."""
    for _, shard in readable_shards(directory):
        if not same_run(shard["identity"], identity):
            raise UsageError(refusal(directory, json.loads(shard["identity"]), identity))
        return


def model_change(found: dict, wanted: dict) -> str:
    """'the model (model.safetensors changed)', 'the model (commit a1b2 -> c3d4)'."""
    if "files" in found and "files" in wanted:
        changed = sorted(name for name in set(found["files"]) | set(wanted["files"])
                         if found["files"].get(name) != wanted["files"].get(name))
        return f"the model ({', '.join(changed)} changed)"
    if found.get("commit") and wanted.get("commit") and found["commit"] != wanted["commit"]:
        return f"the model (commit {found['commit'][:12]} -> {wanted['commit'][:12]})"
    return "the model"


def refusal(directory: Path, found: dict, wanted: dict) -> str:
    differences = config_differences(found.get("config") or {}, wanted["config"],
                                     defaults=default_config())
    if found.get("model") != wanted.get("model"):
        differences.append(model_change(found.get("model") or {}, wanted.get("model") or {}))
    shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
    return (f"{directory} holds finished batches of another config ({shown}): overwrite=true removes them "
            "and draws every sample again, or choose another hydra.run.dir / hydra.sweep.dir")
