"""The Lightning side: a dataset of sample indices and a module whose predict_step samples them."""
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from .generation import CausalLM, generate


class SampleIndices(Dataset):
    """Sample i of the sweep; settings stay in the module so that precision plugins never round them."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return index


class SamplingModule(L.LightningModule):
    def __init__(self, model, prompt_ids, settings, uniforms, max_length, stop_token_id=None):
        super().__init__()
        self.model = model
        self.prompt_ids = prompt_ids
        self.temperatures = torch.tensor([s.temperature for s in settings], dtype=torch.float32)
        self.nuclei = torch.tensor([s.nucleus for s in settings], dtype=torch.float32)
        self.uniforms = uniforms
        self.max_length = max_length
        self.stop_token_id = stop_token_id

    def predict_step(self, indices, batch_idx=0):
        indices = indices.cpu()
        tokens = generate(CausalLM(self.model), self.prompt_ids, self.temperatures[indices],
                          self.nuclei[indices], self.uniforms, self.max_length, self.stop_token_id)
        return {"indices": indices, "tokens": tokens.cpu()}


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
        torch.save({"batches": predictions, "device": str(parameter.device),
                    "dtype": str(parameter.dtype).removeprefix("torch.")},
                   self.directory / f"rank-{trainer.global_rank}.pt")


def read_rank_results(directory: Path) -> tuple[dict[int, list[int]], str, str]:
    """Tokens by sample index from every rank's file, and the device and dtype rank 0 ran on."""
    tokens, device, dtype = {}, None, None
    for path in sorted(directory.glob("rank-*.pt"), key=lambda p: int(p.stem.split("-")[1])):
        result = torch.load(path, weights_only=True)
        device, dtype = device or result["device"], dtype or result["dtype"]
        for batch in result["batches"]:
            for index, row in zip(batch["indices"].tolist(), batch["tokens"].tolist()):
                if index in tokens:
                    raise RuntimeError(f"sample {index} was drawn by two processes")
                tokens[index] = row
    return tokens, device, dtype
