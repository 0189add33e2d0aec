"""The Lightning side: a dataset of sample indices and a module whose predict_step samples them."""
import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from ..decoding.engines import choose_engine, decode
from ..decoding.generation import Generated
from ..decoding.prompts import PromptBatch
from ..decoding.sampling import RowSettings

log = logging.getLogger(__name__)


class SampleIndices(Dataset):
    """Sample i of the sweep; settings stay in the module so that precision plugins never round them."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return index


class SamplingModule(L.LightningModule):
    """Sample i continues prompts' row i with settings[i], step k drawing with uniforms[i, k]
    (uniforms: (samples, new_tokens) float32)."""

    def __init__(self, model, prompts: PromptBatch, settings, uniforms, new_tokens, stop_token_id=None,
                 compile_setting="auto", batch_invariant=False):
        super().__init__()
        self.model = model
        self.prompts = prompts
        self.settings = RowSettings.of(settings)
        self.uniforms = uniforms
        self.new_tokens = new_tokens
        self.stop_token_id = stop_token_id
        self.max_rows = None  # set after an out-of-memory error
        self.compile_setting, self.batch_invariant = compile_setting, batch_invariant
        self.engine = None  # chosen on the first batch, once the model is on its device
        self.progress = None

    def on_predict_start(self):
        """A bar counting generated tokens (rank 0's share; shown on a terminal only)."""
        from tqdm.auto import tqdm
        new_tokens = len(self.settings) * self.new_tokens // self.trainer.world_size
        self.progress = tqdm(total=new_tokens, unit="tok", desc="Generating", leave=False, dynamic_ncols=True,
                             disable=None if self.trainer.is_global_zero else True)

    def on_predict_end(self):
        self.progress.close()

    def predict_step(self, indices, batch_idx=0):
        indices = indices.cpu()
        return {"indices": indices, "generated": self.sample(indices)}

    def sample(self, indices: torch.Tensor) -> Generated:
        """These samples. After an out-of-memory error the batch is halved, for this batch and every
        later one: the samples stay the same, since rows never interact."""
        if self.max_rows is not None and len(indices) > self.max_rows:
            parts = [self.sample(part) for part in indices.split(self.max_rows)]
            return Generated.cat(parts, pad_token=self.stop_token_id or 0)
        self.engine = self.engine or choose_engine(self.model, self.compile_setting, self.batch_invariant)
        try:
            return decode(self.engine, self.model, self.prompts.rows(indices), self.settings.rows(indices),
                          self.uniforms[indices], self.new_tokens, self.stop_token_id,
                          on_step=self.progress.update if self.progress else None).cpu()
        except torch.OutOfMemoryError:
            if len(indices) == 1:
                raise
            self.max_rows = (len(indices) + 1) // 2
        # Retried outside the except block, so that the failed attempt's tensors are freed first.
        log.warning(f"Out of memory with {len(indices)} samples in a batch: continuing with at most "
                    f"{self.max_rows}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return self.sample(indices)


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
                    "dtype": str(parameter.dtype).removeprefix("torch."), "max_rows": pl_module.max_rows,
                    "engine": pl_module.engine.describe() if pl_module.engine else None},
                   self.directory / f"rank-{trainer.global_rank}.pt")


def read_rank_results(directory: Path) -> tuple[dict[int, Generated], dict]:
    """Each sample (a one-row Generated) by index from every rank's file, and how they were drawn:
    the device, dtype and engine of rank 0 and, after an out-of-memory error on any rank, the smallest batch
    a rank went on with (else None)."""
    samples, drawn_with, max_rows = {}, {}, []
    for path in sorted(directory.glob("rank-*.pt"), key=lambda p: int(p.stem.split("-")[1])):
        result = torch.load(path, weights_only=True)
        drawn_with = drawn_with or {"device": result["device"], "dtype": result["dtype"], "engine": result["engine"]}
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
