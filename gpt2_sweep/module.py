"""The Lightning side: a dataset of sample indices and a module whose predict_step samples them."""
import lightning as L
import torch
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
