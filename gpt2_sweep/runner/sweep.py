"""One sweep: check the options, load the model, sample every prompt x draw x setting, write the artifact."""
import logging
import multiprocessing
import os
import platform
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .. import __version__
from ..analysis.divergence import divergence_from_reference
from ..artifact import (ARTIFACT_NAME, SAMPLES_TABLE_NAME, artifact_of_config, check_replaceable, check_writable,
                        library_versions, write_json_atomic, write_table_atomic)
from ..decoding.memory import HEADROOM, available_memory, cpu_memory, gpu_batch_size
from ..decoding.sampling import sample_uniforms
from ..errors import UsageError
from .devices import check_sampler, load_dtype, run_dtype, trainer_arguments
from .interrupts import Terminated, raise_terminated
from .keys import default_config
from .lock import run_dir_lock
from .loading import (context_length, load_config, load_model, load_tokenizer, model_identity, parameter_count,
                      resolve_source)
from .options import RunOptions, ignored_settings, read_options
from .printing import ONE_LINE_SAMPLES, print_samples
from .prompts import Prompt, read_prompt_set
from .quiet import quiet_libraries
from .references import scored_references
from .records import sample_record
from .schedules import settings_in_use, sweep_settings
from .shards import SHARD_DIR, Shards, check_identity, clear, model_change, remove_temporary_files, run_identity
from .study import Study
from .tracking import log_run
from .trackers import check_logger, check_logger_keys

log = logging.getLogger(__name__)
# batch_size=null on the CPU. Bigger batches measured slower on two cores, for a study and for one
# prompt (SmolLM2, 320 and 800 samples: README, "How it scales"); a batch also bounds the memory (KV
# cache and sampling buffers per row) and is the unit a killed run resumes from.
CPU_BATCH_ROWS = 128
CHUNK_ROWS = 1024  # a study's samples.parquet is written this many rows (whole groups) at a time
UNIFORMS_RULE = ("gpt2_sweep.decoding.sampling.sample_uniforms(seed, prompt_index, draw, "
                 "prompt_tokens + max_new_tokens - 1); new token k reads u[prompt_tokens + k - 1]")


def start_ids(tokenizer, prompt: str | None) -> list[int]:
    """The prompt's encoding, or one BOS token (EOS where there is no BOS) without a prompt."""
    ids = tokenizer.encode(prompt) if prompt else []
    if ids:
        return ids
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise UsageError("prompt=null needs a tokenizer with a BOS or EOS token; give a prompt")
    return [start]


def check_length(options: RunOptions, prompt_length: int, context: int | None) -> None:
    """One prompt's length against max_length (or max_new_tokens) and the model's context."""
    if context is not None and prompt_length >= context:
        raise UsageError(f"prompt is {prompt_length} tokens long: the model takes at most {context} "
                         "tokens, the generated ones included")
    if options.max_new_tokens is not None:
        if context is not None and prompt_length + options.max_new_tokens > context:
            raise UsageError(f"max_new_tokens={options.max_new_tokens} is not allowed after a prompt of "
                             f"{prompt_length} tokens: the model takes at most {context} tokens")
        return
    if options.max_length <= prompt_length:
        raise UsageError(f"max_length={options.max_length} is not allowed: it counts the prompt's "
                         f"{prompt_length} tokens, so it must be above {prompt_length}")
    if context is not None and options.max_length > context:
        raise UsageError(f"max_length={options.max_length} is not allowed: the model takes at most "
                         f"{context} tokens")


def check_set_lengths(options: RunOptions, prompts: list[Prompt], prompt_ids: list[list[int]],
                      context: int | None) -> None:
    """Every prompt of a set fits in the model's context with its new tokens; the first that does not
    is named."""
    for prompt, ids in zip(prompts, prompt_ids):
        try:
            check_length(options, len(ids), context)
        except UsageError as error:
            raise UsageError(f"{options.prompt_set.shown}: prompt {prompt.index} ({prompt.text[:40]!r}"
                             f"{'...' if len(prompt.text) > 40 else ''}): {error}") from None


def run_prompts(options: RunOptions, tokenizer, context: int | None) -> tuple[list[Prompt], list[list[int]], int]:
    """The run's prompts, their token ids and the number of new tokens per sample, each length checked."""
    if options.prompt_set is None:
        prompts = [Prompt(0, options.prompt)]
        prompt_ids = [start_ids(tokenizer, options.prompt)]
        check_length(options, len(prompt_ids[0]), context)
        new_tokens = options.max_new_tokens or options.max_length - len(prompt_ids[0])
        return prompts, prompt_ids, new_tokens
    prompts = read_prompt_set(options.prompt_set, options.seed, tokenizer, options.max_new_tokens)
    prompt_ids = [start_ids(tokenizer, prompt.text) for prompt in prompts]
    check_set_lengths(options, prompts, prompt_ids, context)
    return prompts, prompt_ids, options.max_new_tokens


def run_sweep(cfg, output_dir: Path, overrides: list[str] = (), multirun: bool = False) -> Path:
    """Generate every sample of the configured sweep (each prompt x draw x setting); return the path
    of samples.json.

    A run dir that already holds the artifact of the same config is left as it is; one that another
    run holds is refused (runner/lock.py). A job of a multirun prints one line: no samples, unless
    print_samples is among its overrides. The run is then logged to the tracker of logger=..., if any.
    """
    quiet_libraries()
    output_dir = Path(output_dir)
    check_writable(output_dir / ARTIFACT_NAME, "hydra.run.dir")
    with run_dir_lock(output_dir):
        artifact_path = sweep_in(cfg, output_dir, overrides, multirun)
        log_run(cfg, output_dir, multirun)  # logger=...: also where the artifact was already there
        return artifact_path


def check_same_model(artifact_path: Path, document: dict, model_cfg) -> None:
    """A finished artifact of this config whose model directory's weights have changed since is
    refused, as its shards would be: the config alone cannot tell. Hub ids, GGUF models, a model dir
    that is gone and artifacts written before metadata.model_identity are known by the config only."""
    stored = document["metadata"].get("model_identity") or {}
    # A GGUF's converted copy depends on transformers' version as well as on the file: not compared.
    if "files" not in stored or model_cfg.get("gguf_file"):
        return
    try:
        source = resolve_source(model_cfg)
    except UsageError:  # the model dir moved or deleted since: nothing to compare with
        return
    if not Path(source.location).is_dir():
        return
    current = model_identity(source)
    if current != stored:
        raise UsageError(f"{artifact_path} holds samples of {model_change(stored, current)}: overwrite=true "
                         "draws them again, or choose another hydra.run.dir / hydra.sweep.dir")


def sweep_in(cfg, output_dir: Path, overrides: list[str], multirun: bool) -> Path:
    """run_sweep in a run dir this process holds."""
    options = read_options(cfg)
    trainer_args = trainer_arguments(cfg.devices)
    check_logger(cfg)
    check_logger_keys(cfg)  # imports the logger's class: here, where torch is imported already
    check_sampler(options.sampler, cfg.devices)
    config = OmegaConf.to_container(cfg, resolve=True)
    artifact_path = output_dir / ARTIFACT_NAME
    finished = None if options.overwrite else artifact_of_config(artifact_path, config, default_config())
    if finished is not None:
        check_same_model(artifact_path, finished, cfg.model)
        remove_leftovers(output_dir)  # a run killed after writing its artifact, before removing its shards
        clear(output_dir / SHARD_DIR)
        print(f"Skipped: {artifact_path} already holds the samples of this config "
              "(overwrite=true generates them again)")
        return artifact_path
    remove_leftovers(output_dir)
    if options.output_json is not None:
        check_writable(options.output_json, "output_json")
        if not options.overwrite:
            check_replaceable(options.output_json, config, "output_json", default_config())
    source = resolve_source(cfg.model)
    tokenizer = load_tokenizer(source)
    model_config = load_config(source)  # a Hub id's snapshot is in the cache from here on: its commit is known
    identity = run_identity(config, model_identity(source))
    if not options.overwrite:  # overwrite=true clears the shards of any config before drawing
        check_identity(output_dir / SHARD_DIR, identity)
    prompts, prompt_ids, new_tokens = run_prompts(options, tokenizer, context_length(model_config))
    settings, notes = sweep_settings(options.sweeps, options.ranges, options.values, options.num_samples,
                                     options.schedule)
    for note in [*ignored_settings(options), *notes]:
        log.warning(note)
    study = Study.crossed(prompts, prompt_ids, options.draws, settings, new_tokens, options.seed)
    longest = max(len(ids) for ids in prompt_ids) + new_tokens
    if trainer_args["accelerator"] == "cpu":
        check_cpu_memory(model_config, options, len(study), longest, new_tokens, trainer_args)
    if not multirun:  # a multirun's job prints one line
        print(f"Generating {len(study):,} samples of {new_tokens:,} new tokens each ...")
    model = load_model(source, load_dtype(trainer_args["precision"]))

    stop_token_id = tokenizer.eos_token_id if options.stop_at_eos else None
    batch_size = options.batch_size or default_batch_size(model, len(study), longest, trainer_args)
    shards = draw_samples(model, study, stop_token_id, batch_size, trainer_args, output_dir, identity, options)
    drawn_with = shards.how_drawn()
    device = drawn_with["device"]
    axes = settings_in_use(settings, options.sweeps)
    records = sample_records(study, shards, tokenizer, stop_token_id, axes, options.study)
    metadata = {
        "model_name": cfg.model.name,
        "model_source": source.location,
        "num_samples": len(study),
        "max_length": None if options.study else len(prompt_ids[0]) + new_tokens,
        "nucleus": options.nucleus,
        "temperatures": options.temperature,
        "sweeps": options.sweeps,
        "prompt": options.prompt,
        "p_values": None if options.study else study.vectors()[0].tolist(),
        "seed": options.seed,
        "num_samples_requested": options.num_samples,
        "schedule": options.schedule,
        "batch_size": batch_size,
        "batch_size_after_out_of_memory": drawn_with["batch_size_after_out_of_memory"],
        "stop_at_eos": options.stop_at_eos,
        "device": device,
        "device_name": device_name(torch.device(device)),
        "devices": trainer_args["devices"],
        "dtype": drawn_with["dtype"],
        "compute_dtype": drawn_with["compute_dtype"],
        "precision": trainer_args["precision"],
        "engine": drawn_with["engine"],
        "batch_invariant": options.batch_invariant,
        "model_identity": identity["model"],
        "versions": {"gpt2_sweep": __version__, **library_versions()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "overrides": list(overrides),
    }
    printed = samples_to_print(options, overrides, multirun)
    shown = printed + ONE_LINE_SAMPLES
    if options.study:
        references = scored_references(model, tokenizer, prompts, prompt_ids, new_tokens)
        metadata.update(study_metadata(options, study, prompts, references, stop_token_id))
        head = []
        write_table_atomic(output_dir / SAMPLES_TABLE_NAME, in_chunks(records, CHUNK_ROWS, head, shown))
        texts = None
    else:
        texts = list(records)
        head = texts[:shown]
    artifact = {"metadata": metadata, "texts": texts}
    write_json_atomic(artifact_path, artifact)
    if options.output_json is not None:
        write_json_atomic(options.output_json, artifact)
    clear(output_dir / SHARD_DIR)
    if not multirun:  # a multirun's page is its sweep dir's, written with its summary
        from ..analysis.report import write_run_report  # noqa: PLC0415 - pandas, once the samples are written

        write_run_report(output_dir, sample_uniforms)
    print_samples(head, printed, artifact_path, total=len(study))
    written = f"{output_dir / SAMPLES_TABLE_NAME} (metadata: {artifact_path})" if options.study else artifact_path
    print(f"Samples written to {written}"
          + (f" and {options.output_json}" if options.output_json is not None else ""))
    return artifact_path


def sample_records(study: Study, shards: Shards, tokenizer, stop_token_id, axes, in_study: bool):
    """Every sample's text entry, in order, built one (prompt, draw) group at a time from the shards
    (each group's divergences measured from its own reference)."""
    size = len(study.settings)
    for number, group in enumerate(study.groups):
        drawn = shards.samples(number * size, (number + 1) * size)
        records = [sample_record(setting, generated, tokenizer, group.ids, stop_token_id, axes,
                                 group if in_study else None)
                   for setting, generated in zip(study.settings, drawn)]
        for sample, position in zip(records, divergence_from_reference(records)):
            sample["metrics"]["diverges_from"] = position
        yield from records


def in_chunks(records, rows: int, head: list, shown: int):
    """Lists of about `rows` records; the first `shown` also kept in `head`."""
    chunk = []
    for record in records:
        if len(head) < shown:
            head.append(record)
        chunk.append(record)
        if len(chunk) >= rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def study_metadata(options: RunOptions, study: Study, prompts: list[Prompt], references: dict[int, dict],
                   stop_token_id: int | None) -> dict:
    """What a study's samples.json adds: the prompts (each stored once, with its reference's tokens and
    their log p under the model where it has one), draws, the rule of the uniforms, the samples file,
    and the token a sample stops at (stop_at_eos; None: none), which repetition % discounts."""
    return {
        "prompts_file": str(options.prompt_set.path) if options.prompt_set else None,
        "prompts": [{**prompt.stored(), **references.get(prompt.index, {})} for prompt in prompts],
        "draws": options.draws,
        "max_new_tokens": study.new_tokens,
        "uniforms": UNIFORMS_RULE,
        "samples_file": SAMPLES_TABLE_NAME,
        "stop_token_id": stop_token_id,
    }


def samples_to_print(options: RunOptions, overrides, multirun: bool) -> int:
    """print_samples; 0 in a multirun's job unless the command line sets it (the summary says the rest)."""
    if multirun and not any(override.lstrip("+").startswith("print_samples=") for override in overrides):
        return 0
    return options.print_samples


def gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"


def check_cpu_memory(model_config, options: RunOptions, num_samples: int, length: int, new_tokens: int,
                     trainer_args) -> None:
    """Refuse, before the model loads, a run on the CPU whose weights, batch and results cannot fit
    in the memory the machine has available (an estimate), naming a batch_size that fits; length: the
    longest sample's, its prompt counted."""
    available = available_memory()
    if available is None:
        return
    processes = trainer_args["devices"] if isinstance(trainer_args["devices"], int) else len(trainer_args["devices"])
    memory = cpu_memory(model_config, parameter_count(model_config), num_samples, length, new_tokens,
                        run_dtype(trainer_args["precision"]), processes)
    batch_size = min(options.batch_size or CPU_BATCH_ROWS, -(-num_samples // processes))
    if memory.needed(batch_size) <= available * HEADROOM:
        return
    fitting = memory.fitting_batch_size(available)
    batch = f"batch_size={options.batch_size or f'null: {batch_size:,} at once'}"
    shown = (f"{num_samples:,} samples of {new_tokens:,} new tokens ({batch}) need about "
             f"{gib(memory.needed(batch_size))} of memory; this machine has {gib(available)} available")
    if fitting >= 1:
        raise UsageError(f"{shown}: batch_size={fitting:,} fits (samples per forward pass; the samples stay "
                         "the same), or fewer samples")
    raise UsageError(f"{shown}, and their results alone ({gib(memory.result_bytes)}) do not fit: fewer samples "
                     "(num_samples, a smaller grid) or a shorter max_length")


def draw_samples(model, study: Study, stop_token_id, batch_size, trainer_args, output_dir: Path, identity: dict,
                 options: RunOptions) -> Shards:
    """Every sample not yet in a shard of this run dir, drawn by Lightning's Trainer.predict on the
    configured devices and saved a batch at a time as shards; returns all the run's shards."""
    directory = output_dir / SHARD_DIR
    if options.overwrite:
        clear(directory)
    shards = Shards.scan(directory, identity, len(study))
    remaining = shards.remaining()
    if remaining:
        if shards.done():
            log.info(f"Resuming: {shards.done()} of {len(study)} samples are in {directory}, "
                     f"drawing the other {len(remaining)}")
        # Lightning takes seconds to import: bad input is reported before that.
        import lightning as L

        from .module import SamplingModule, ShardWriter, sample_loader

        module = SamplingModule(model, study, stop_token_id, options.compile, options.batch_invariant,
                                done=shards.done(), sampler=options.sampler)
        trainer = L.Trainer(**trainer_args, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=str(output_dir),
                            callbacks=[ShardWriter(directory, identity)])
        predict(trainer, module, sample_loader(remaining, batch_size))
        shards = Shards.scan(directory, identity, len(study))
    if shards.remaining():
        raise RuntimeError(f"samples {shards.remaining()[:10]} were not drawn")
    return shards


def predict(trainer, module, loader) -> None:
    """trainer.predict, with Ctrl-C raised as KeyboardInterrupt: Lightning catches it, ignores SIGINT
    from then on and exits with code 1, which would end a multirun without its summary.

    SIGTERM ends it at the next batch boundary as Terminated, the batch in flight finished and saved:
    Lightning's signal connector only notes SIGTERM (and calls the handler in place when predict
    starts), so that handler is made one that notes it for the module, which reads it before each
    batch, and passes it on to ddp_spawn's ranks, which read Lightning's trainer.received_sigterm. A
    SIGTERM handler of someone else's (submitit's, which ignores it: its USR2 requeues) is left alone.
    """
    sigint_handler = signal.getsignal(signal.SIGINT)

    def note(signum, frame):
        if not module.sigterm_received:
            for rank in multiprocessing.active_children():
                os.kill(rank.pid, signal.SIGTERM)
        module.sigterm_received = True

    in_main_thread = threading.current_thread() is threading.main_thread()
    sigterm_handler = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    takes_sigterm = sigterm_handler in (signal.SIG_DFL, raise_terminated)
    if takes_sigterm:
        signal.signal(signal.SIGTERM, note)
    try:
        trainer.predict(module, loader, return_predictions=False)
    except SystemExit as exit:
        # Lightning's own exit after Ctrl-C; another (submitit's requeue on USR2) goes on as it is
        if trainer.interrupted and isinstance(exit.__context__, KeyboardInterrupt):
            signal.signal(signal.SIGINT, sigint_handler)
            raise KeyboardInterrupt from None
        raise
    except BaseException:
        if module.sigterm_received:  # a DDP rank stopped by the signal fails in the launcher as another error
            raise Terminated from None
        raise
    finally:
        if takes_sigterm:
            signal.signal(signal.SIGTERM, sigterm_handler)
    if module.sigterm_received:  # during the last batch: its shard is written, the rerun assembles the artifact
        raise Terminated


def default_batch_size(model, num_samples: int, max_length: int, trainer_args: dict) -> int:
    """batch_size=null: on GPUs what fits in memory; elsewhere CPU_BATCH_ROWS samples at a time."""
    if trainer_args["accelerator"] != "gpu":
        return min(num_samples, CPU_BATCH_ROWS)
    return gpu_batch_size(model, num_samples, max_length, trainer_args["devices"],
                          run_dtype(trainer_args["precision"]))


def remove_leftovers(output_dir: Path) -> None:
    """Temporary files of an earlier run of this dir that was killed; its finished shards stay."""
    for name in (ARTIFACT_NAME, SAMPLES_TABLE_NAME):
        for path in output_dir.glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)
    remove_temporary_files(output_dir / SHARD_DIR)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
