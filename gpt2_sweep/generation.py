"""The decode loop: prefill the shared prompt once, then one token per step for the whole batch."""
import inspect

import torch
from transformers import DynamicCache

from .sampling import select_tokens

# MKL in its reproducible mode (MKL_CBWR, set by the package) computes each row of a matrix
# product the same way whatever the batch, but only from 4 rows up: smaller batches are padded.
MIN_DECODE_ROWS = 4


class CausalLM:
    """Calls a Hugging Face causal LM with a KV cache and returns the last position's logits."""

    def __init__(self, model):
        self.model = model
        parameters = inspect.signature(model.forward).parameters
        # transformers 5.24 renamed past_key_values to cache; older 5.x releases only know the old name.
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.keeps_last_logits_only = "logits_to_keep" in parameters

    def new_cache(self):
        return DynamicCache(config=self.model.config)

    def last_logits(self, input_ids, cache):
        kwargs = {self.cache_argument: cache, "use_cache": True}
        if self.keeps_last_logits_only:
            kwargs["logits_to_keep"] = 1
        return self.model(input_ids=input_ids, **kwargs).logits[:, -1]


def pad_rows(values: torch.Tensor, rows: int) -> torch.Tensor:
    """Repeat the last entry until there are `rows` entries."""
    return torch.cat([values, values[-1:].expand(rows - len(values))])


@torch.inference_mode()
def generate(model, prompt_ids, temperatures, nuclei, uniforms, max_length, stop_token_id=None):
    """Token ids (batch, length) of one sample per (temperature, nucleus) pair.

    Position t >= 1 is drawn with uniforms[t - 1]. With stop_token_id set, generation ends once
    every row has produced it, and a row that has is filled with it from then on.
    """
    lm = model if isinstance(model, CausalLM) else CausalLM(model)
    device = lm.model.device
    batch = len(temperatures)
    rows = max(batch, MIN_DECODE_ROWS)
    temperatures = pad_rows(temperatures.to(device), rows)
    nuclei = pad_rows(nuclei.to(device), rows)
    uniforms = uniforms.to(device)
    prompt_ids = prompt_ids.to(device)
    prompt_length = len(prompt_ids)

    tokens = torch.empty(rows, max_length, dtype=torch.long, device=device)
    tokens[:, :prompt_length] = prompt_ids
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    cache = lm.new_cache()
    # The prompt is the same for every sample: one forward at batch 1, its cache shared by all rows.
    logits = lm.last_logits(prompt_ids.unsqueeze(0), cache).expand(rows, -1)
    cache.batch_repeat_interleave(rows)
    end = max_length
    for position in range(prompt_length, max_length):
        next_tokens = select_tokens(logits, temperatures, nuclei, uniforms[position - 1])
        if stop_token_id is not None:
            next_tokens = torch.where(finished, stop_token_id, next_tokens)
            finished |= next_tokens == stop_token_id
        tokens[:, position] = next_tokens
        if position + 1 == max_length or (stop_token_id is not None and bool(finished.all())):
            end = position + 1
            break
        logits = lm.last_logits(next_tokens.unsqueeze(-1), cache)
    return tokens[:batch, :end]
