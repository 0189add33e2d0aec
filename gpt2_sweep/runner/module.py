"""The Lightning side: a dataset of sample indices and a module whose predict_step samples them
(generated tokens only, the prompt left out)."""
import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from ..decoding.engines import choose_engine, compute_dtype, decode
from ..decoding.generation import Generated
from ..decoding.prompts import PromptBatch
from ..decoding.sampling import RowSettings
from ..errors import UsageError
from .quiet import quiet_libraries
from .study import Study

log = logging.getLogger(__name__)
quiet_libraries()  # DDP's spawned ranks import this module without running run_sweep


class SampleIndices(Dataset):
    """Sample i of the sweep; settings stay in the module so that precision plugins never round them."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return index


def decode_rows(engine, model, study: Study, vectors, settings: RowSettings, samples: torch.Tensor,
                stop_token_id=None, on_step=None) -> Generated:
    """The study's `samples` (generated tokens only), rows in the order of `samples`, in one decode call:
    rows of different prompts and draws side by side, each distinct prompt's prefix computed once."""
    groups = study.group_of(samples)
    prompts = PromptBatch.of([study.groups[group].ids for group in groups.tolist()])
    return decode(engine, model, prompts, settings.rows(samples), study.row_uniforms(vectors, groups),
                  study.new_tokens, stop_token_id, on_step=on_step)


class SamplingModule(L.LightningModule):
    def __init__(self, model, study: Study, stop_token_id=None, compile_setting="auto", batch_invariant=False):
        super().__init__()
        self.model = model
        self.study = study
        self.settings = RowSettings.of(study.sample_settings())
        self.vectors = study.vectors()
        self.stop_token_id = stop_token_id
        self.max_rows = None  # set after an out-of-memory error
        self.compile_setting, self.batch_invariant = compile_setting, batch_invariant
        self.engine = None  # chosen on the first batch, once the model is on its device
        self.compute_dtype = None  # read in the first batch, under the precision's context
        self.progress = None

    def on_predict_start(self):
        """A bar counting generated tokens (rank 0's share; shown on a terminal only)."""
        from tqdm.auto import tqdm
        new_tokens = len(self.study) * self.study.new_tokens // self.trainer.world_size
        self.progress = tqdm(total=new_tokens, unit="tok", desc="Generating", leave=False, dynamic_ncols=True,
                             disable=None if self.trainer.is_global_zero else True)

    def on_predict_end(self):
        self.progress.close()

    def predict_step(self, indices, batch_idx=0):
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
        self.engine = self.engine or choose_engine(self.model, self.compile_setting, self.batch_invariant)
        try:
            return decode_rows(self.engine, self.model, self.study, self.vectors, self.settings, indices,
                               self.stop_token_id, on_step=self.progress.update if self.progress else None).cpu()
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not out_of_memory(error):
                raise
            if len(indices) == 1:
                raise UsageError(f"out of memory with one sample in a batch ({one_line(error)}): a shorter "
                                 "max_length, fewer samples or a machine with more memory") from None
            self.max_rows = (len(indices) + 1) // 2
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


def sample_loader(count: int, batch_size: int | None) -> DataLoader:
    return DataLoader(SampleIndices(count), batch_size=batch_size or count, shuffle=False)


class RankResultWriter(BasePredictionWriter):
    """Each process saves the samples it drew; the launching process merges the files.

    One path for one device and for ddp_spawn, whose workers return nothing to the launcher.
    """

    def __init__(self, directory: Path):
        super().__init__(write_interval="epoch")
        self.directory = directory

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        parameter = next(pl_module.model.parameters())
        batches = [{"indices": batch["indices"], **vars(batch["generated"])} for batch in predictions]
        torch.save({"batches": batches, "device": str(parameter.device),
                    "dtype": str(parameter.dtype).removeprefix("torch."),
                    "compute_dtype": str(pl_module.compute_dtype or parameter.dtype).removeprefix("torch."),
                    "max_rows": pl_module.max_rows,
                    "engine": pl_module.engine.describe() if pl_module.engine else None},
                   self.directory / f"rank-{trainer.global_rank}.pt")


def read_rank_results(directory: Path) -> tuple[dict[int, Generated], dict]:
    """Each sample (a one-row Generated) by index from every rank's file, and how they were drawn:
    the device, dtype (the weights'), compute_dtype (the forward's products': autocast's under a mixed
    precision) and engine of rank 0 and, after an out-of-memory error on any rank, the smallest batch
    a rank went on with (else None)."""
    samples, drawn_with, max_rows = {}, {}, []
    for path in sorted(directory.glob("rank-*.pt"), key=lambda p: int(p.stem.split("-")[1])):
        result = torch.load(path, weights_only=True)
        drawn_with = drawn_with or {key: result[key] for key in ("device", "dtype", "compute_dtype", "engine")}
        if result["max_rows"] is not None:
            max_rows.append(result["max_rows"])
        for batch in result["batches"]:
            indices = batch.pop("indices").tolist()
            generated = Generated(**batch)
            for row, index in enumerate(indices):
                if index in samples:
                    raise RuntimeError(f"sample {index} was drawn by two processes")
                samples[index] = generated.rows(slice(row, row + 1))
    return samples, {**drawn_with, "batch_size_after_out_of_memory": min(max_rows, default=None)}
