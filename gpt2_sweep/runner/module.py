"""The Lightning side: a dataset of sample indices, a module whose predict_step samples them
(generated tokens only, the prompt left out), and a writer that saves each batch as a shard."""
import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from ..decoding.engines import choose_engine, compute_dtype, decode, decoder_for
from ..decoding.generation import Generated
from ..decoding.prompts import PromptBatch
from ..decoding.sampling import RowSettings
from ..errors import UsageError
from .interrupts import TERMINATED_EXIT_CODE, Terminated
from .quiet import quiet_libraries
from .progress import Progress
from .shards import write_shard
from .study import Study

log = logging.getLogger(__name__)
quiet_libraries()  # DDP's spawned ranks import this module without running run_sweep


class SampleIndices(Dataset):
    """The sweep's samples still to draw, by index; settings stay in the module so that precision
    plugins never round them."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, position):
        return self.indices[position]


def decode_rows(engine, model, study: Study, vectors, settings: RowSettings, samples: torch.Tensor,
                stop_token_id=None, on_step=None, decoder=None) -> Generated:
    """The study's `samples` (generated tokens only), rows in the order of `samples`, in one decode call:
    rows of different prompts and draws side by side, each distinct prompt's prefix computed once.
    decoder: engines.decoder_for's, kept across batches."""
    groups = study.group_of(samples)
    prompts = PromptBatch.of([study.groups[group].ids for group in groups.tolist()])
    return decode(engine, model, prompts, settings.rows(samples), study.row_uniforms(vectors, groups),
                  study.new_tokens, stop_token_id, on_step=on_step, decoder=decoder)


class SamplingModule(L.LightningModule):
    def __init__(self, model, study: Study, stop_token_id=None, compile_setting="auto", batch_invariant=False,
                 done: int = 0, sampler="auto"):
        super().__init__()
        self.model = model
        self.study = study
        self.settings = RowSettings.of(study.sample_settings())
        self.vectors = study.vectors()
        self.stop_token_id = stop_token_id
        self.max_rows = None  # set after an out-of-memory error
        self.compile_setting, self.batch_invariant, self.sampler = compile_setting, batch_invariant, sampler
        self.engine = None  # chosen on the first batch, once the model is on its device
        self.decoder = None  # the engine's, kept across batches: its decode state and compiled step are reused
        self.compute_dtype = None  # read in the first batch, under the precision's context
        self.done = done  # samples an earlier run of this dir drew (its shards)
        self.progress = None
        self.sigterm_received = False  # set by sweep.predict's SIGTERM handler in the launching process

    def on_predict_start(self):
        """Samples done of the run's total, counted by rank 0 for all ranks (they draw in step)."""
        self.progress = Progress(len(self.study), self.done, shown=self.trainer.is_global_zero)
        self.drawn_here = 0

    def on_predict_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
        self.drawn_here += len(batch) * self.trainer.world_size
        self.progress.set(self.done + self.drawn_here)

    def on_predict_end(self):
        self.progress.close()

    def step_done(self, rows: int) -> None:
        """One new token for each of `rows` samples: that share of them, times the ranks."""
        self.progress.advance(rows * self.trainer.world_size / self.study.new_tokens)

    def predict_step(self, indices, batch_idx=0):
        if self.sigterm_received:  # the batches before this one are saved: stop here
            raise Terminated
        if self._trainer is not None and self.trainer.world_size > 1 and self.trainer.received_sigterm:
            raise SystemExit(TERMINATED_EXIT_CODE)  # a spawned rank: its exit code tells the launching process
        indices = indices.cpu()
        self.compute_dtype = self.compute_dtype or compute_dtype(self.model)
        return {"indices": indices, "generated": self.sample(indices)}

    def sample(self, indices: torch.Tensor) -> Generated:
        """These samples. After an out-of-memory error (on a GPU or the CPU) the batch is halved, for
        this batch and every later one: the samples stay the same, since rows never interact. One
        sample that does not fit is a UsageError."""
        if self.max_rows is not None and len(indices) > self.max_rows:
            parts = [self.sample(part) for part in indices.split(self.max_rows)]
            return Generated.cat(parts, pad_token=self.stop_token_id or 0)
        self.engine = self.engine or choose_engine(self.model, self.compile_setting, self.batch_invariant,
                                                   self.sampler)
        self.decoder = self.decoder or decoder_for(self.engine, self.model)
        try:
            return decode_rows(self.engine, self.model, self.study, self.vectors, self.settings, indices,
                               self.stop_token_id, on_step=self.step_done if self.progress else None,
                               decoder=self.decoder).cpu()
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not out_of_memory(error):
                raise
            if len(indices) == 1:
                raise UsageError(f"out of memory with one sample in a batch ({one_line(error)}): a shorter "
                                 "max_length, fewer samples or a machine with more memory") from None
            self.max_rows = (len(indices) + 1) // 2
            self.decoder = None  # its state was sized for the failed batch
        # Retried outside the except block, so that the failed attempt's tensors are freed first.
        log.warning(f"Out of memory with {len(indices)} samples in a batch: continuing with at most "
                    f"{self.max_rows}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return self.sample(indices)


def out_of_memory(error: Exception) -> bool:
    """A GPU's out-of-memory error, or the CPU allocator's (a RuntimeError: "can't allocate memory")."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def one_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def sample_loader(indices: list[int], batch_size: int | None) -> DataLoader:
    return DataLoader(SampleIndices(indices), batch_size=batch_size or len(indices), shuffle=False)


class ShardWriter(BasePredictionWriter):
    """Each process saves each batch it drew as a shard (shards.write_shard), as soon as it is drawn.

    One path for one device and for ddp_spawn, whose workers return nothing to the launcher.
    """

    def __init__(self, directory: Path, identity: dict):
        super().__init__(write_interval="batch")
        self.directory, self.identity = directory, identity

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        parameter = next(pl_module.model.parameters())
        drawn_with = {"device": str(parameter.device), "dtype": str(parameter.dtype).removeprefix("torch."),
                      "compute_dtype": str(pl_module.compute_dtype or parameter.dtype).removeprefix("torch."),
                      "engine": pl_module.engine.describe() if pl_module.engine else None,
                      "max_rows": pl_module.max_rows}
        write_shard(self.directory, self.identity, prediction["indices"], prediction["generated"], drawn_with)
