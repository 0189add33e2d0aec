"""The run's JSON artifact: the original script's keys plus what makes a run reproducible."""
import errno
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from .errors import DiskFull, UsageError

ARTIFACT_NAME = "samples.json"
# A study's samples (a prompt set, or several draws): one row per sample, beside samples.json, whose
# metadata.samples_file names it and whose texts is null.
SAMPLES_TABLE_NAME = "samples.parquet"
# The keys of a text entry that describe what was drawn; every other key is one of its settings.
SAMPLE_FIELDS = ("prompt_index", "draw", "text", "continuation", "tokens", "prompt_tokens", "token_logprobs",
                 "token_strings", "token_kept", "metrics")
# Config keys that leave the samples as they are: a run resumed with other values is the same run.
SAMPLE_NEUTRAL_KEYS = ("overwrite", "print_samples", "logger")
PACKAGES = ("torch", "transformers", "lightning", "hydra-core", "omegaconf", "tokenizers")


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def check_writable(path: Path, option: str) -> None:
    """Fail before any generation if `path` cannot be written; creates nothing that stays.

    Permission bits do not tell (root, read-only mounts, /proc): the missing parents are created
    for real and a temporary file written among them, then all of it is removed again.
    """
    path = Path(path)
    shown = f"{option}={str(path)!r} cannot be written"
    if path.is_dir():
        raise UsageError(f"{option}={str(path)!r} is a directory: give a file path")
    missing = []
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{shown}: {ancestor} is not a directory")
    created = []
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except OSError as error:
                raise UsageError(f"{shown}: cannot create {directory} ({error.strerror})") from error
            created.append(directory)
        try:
            with tempfile.TemporaryFile(dir=path.parent):
                pass
        except OSError as error:
            raise UsageError(f"{shown}: cannot write in {path.parent} ({error.strerror})") from error
    finally:
        for directory in reversed(created):
            directory.rmdir()


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a full quota


def disk_full(path: Path, needed: int | None, error: OSError) -> DiskFull:
    """The one line for a file that did not fit: its path, the bytes it needed and those free."""
    try:
        free = f"{shutil.disk_usage(Path(path).parent).free:,} bytes are free"
    except OSError:
        free = "the free space is unknown"
    size = f"{needed:,} bytes" if needed is not None else "more space"
    return DiskFull(f"no space left to write {path} ({error.strerror or 'disk full'}): it needed {size}, {free}; "
                    "free some and run the same command again (what is finished is kept)")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place; a full disk
    is a DiskFull naming the path and the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            raise disk_full(path, len(data), error) from error
        raise


def write_json_atomic(path: Path, document: dict) -> None:
    """The document as indented UTF-8 JSON, written as write_bytes_atomic."""
    write_bytes_atomic(Path(path), (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_table_atomic(path: Path, chunks) -> None:
    """Records (one per sample, metrics a nested dict), given as an iterable of lists, as a Parquet
    table with one row group per list, written as write_json_atomic: one list in memory at a time.

    The first list fixes the columns' types; a field null in all its rows is taken as an integer
    (metrics.diverges_from, the only one that can be) and a later list's values are cast to them.
    """
    import pyarrow as pa  # noqa: PLC0415 - studies only: the import takes a while
    import pyarrow.parquet as pq  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    writer = None
    try:
        for records in chunks:
            if writer is None:
                schema = without_null_types(pa.Table.from_pylist(records).schema)
                writer = pq.ParquetWriter(temporary, schema)
            writer.write_table(pa.Table.from_pylist(records, schema=schema))
        if writer is None:
            raise ValueError(f"{path}: no samples to write")
        writer.close()
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException as error:
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            raise disk_full(path, None, error) from error  # its size is not known before it is written
        raise


def without_null_types(schema):
    """The schema with each null-typed field (nested ones included) made int64."""
    import pyarrow as pa  # noqa: PLC0415

    def fixed(field):
        if pa.types.is_null(field.type):
            return field.with_type(pa.int64())
        if pa.types.is_struct(field.type):
            return field.with_type(pa.struct([fixed(field.type.field(i)) for i in range(field.type.num_fields)]))
        return field
    return pa.schema([fixed(field) for field in schema])


def read_json(path: Path) -> dict | None:
    """The JSON object in path, or None where there is none or it does not parse."""
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def read_artifact(path: Path) -> dict | None:
    """The artifact at path, or None where there is none or it is not a complete one (a study's
    samples.json without its samples file)."""
    document = read_json(path)
    if document is None or not {"metadata", "texts"} <= set(document):
        return None
    samples_file = document["metadata"].get("samples_file")
    if document["texts"] is None and not (samples_file and (Path(path).parent / samples_file).is_file()):
        return None
    return document


def sample_settings(sample: dict) -> dict:
    """A text entry's settings (temperature, nucleus and any other), in the artifact's order."""
    return {key: value for key, value in sample.items() if key not in SAMPLE_FIELDS}


MISSING = object()


def config_differences(old: dict, new: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """'key: old -> new' for each leaf that differs, keys dotted. A key the old config lacks (a key
    added to the package since it was written) does not differ where the new config holds its
    default from `defaults`: the old version behaved as that default does."""
    differences = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, MISSING), new.get(key)
        default = (defaults or {}).get(key, MISSING)
        if a is MISSING and default is not MISSING and b == default:
            continue
        a = None if a is MISSING else a
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{prefix}{key}.", default if isinstance(default, dict) else None)
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return differences


def sample_neutral(config: dict) -> dict:
    """The resolved config without the keys that leave the samples as they are: two runs whose
    configs agree here draw the same samples."""
    return {key: value for key, value in config.items() if key not in SAMPLE_NEUTRAL_KEYS}


def artifact_differences(document: dict, config: dict, defaults: dict | None = None) -> list[str]:
    """How the config an artifact was drawn with differs from `config`, keys that leave the samples
    as they are (SAMPLE_NEUTRAL_KEYS) aside, and keys added since at their defaults (config_differences)."""
    return config_differences(sample_neutral(document["metadata"].get("config") or {}), sample_neutral(config),
                              defaults=defaults)


def shown_differences(differences: list[str]) -> str:
    return "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")


def holds_artifact_of(path: Path, config: dict, defaults: dict | None = None) -> bool:
    """True when path holds a complete artifact of this config (`overwrite` aside), False when it
    holds none; a complete artifact of another config is an error, never silently replaced.
    defaults: the config's defaults, for artifacts written before a key was added."""
    return artifact_of_config(path, config, defaults) is not None


def artifact_of_config(path: Path, config: dict, defaults: dict | None = None) -> dict | None:
    """holds_artifact_of's artifact itself, read once: the document, or None where there is none."""
    document = read_artifact(path)
    if document is None:
        return None
    differences = artifact_differences(document, config, defaults)
    if differences:
        raise UsageError(f"{path} holds the samples of another config ({shown_differences(differences)}): "
                         "overwrite=true replaces them, or choose another hydra.run.dir / hydra.sweep.dir")
    return document


def check_replaceable(path: Path, config: dict, option: str, defaults: dict | None = None) -> None:
    """An existing file at `path` is replaced only where it holds the artifact of this same config
    (the caller checks overwrite=true first): any other file is an error, never silently replaced."""
    path = Path(path)
    if not path.is_file():
        return
    document = read_artifact(path)
    shown = f"{option}={str(path)!r}"
    if document is None:
        raise UsageError(f"{shown} exists and is not an artifact of this run: overwrite=true replaces it, "
                         "or give another path")
    differences = artifact_differences(document, config, defaults)
    if differences:
        raise UsageError(f"{shown} holds the samples of another config ({shown_differences(differences)}): "
                         "overwrite=true replaces it, or give another path")


def listed(jobs: list[str]) -> str:
    """'job 0', 'jobs 0-3, 5': numbered jobs as ranges, any others by name."""
    numbers = sorted(int(job) for job in jobs if job.isdigit())
    ranges = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    parts = [str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}-{b}" for a, b in ranges]
    parts += sorted(job for job in jobs if not job.isdigit())
    return ("jobs " if len(jobs) > 1 else "job ") + ", ".join(parts)
