"""The decode loop: prefill the shared prompt once, then one token per step for the whole batch."""
import inspect
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from .ordering import CANDIDATES, candidate_step
from .sampling import RowSettings

# MKL in its reproducible mode (MKL_CBWR, set by the package) computes each row of a matrix
# product the same way whatever the batch, but only from 4 rows up: smaller batches are padded.
MIN_DECODE_ROWS = 4


class TransposedHead(torch.nn.Linear):
    """A Linear output head without bias that multiplies by a contiguous copy of its weight's
    transpose.

    On the CPU, MKL reads a (hidden, vocabulary) matrix faster than the usual (vocabulary, hidden)
    one at decoding batch sizes. In its reproducible mode the logits of 4 rows or more are those of
    the usual layout, bit for bit (a test); one row, as in the prompt's prefill, may differ in the
    last bit. The weight itself stays, so the state dict and tied embeddings are unchanged; the
    copy costs the head's size in memory once more and is made for inference: it does not follow
    later changes of the weight.
    """

    def __init__(self, linear: torch.nn.Linear):
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, None
        self.register_buffer("weight_t", linear.weight.detach().t().contiguous(), persistent=False)

    def forward(self, hidden):
        return hidden @ self.weight_t


class CausalLM:
    """Calls a Hugging Face causal LM with a KV cache and returns the last position's logits.

    On the CPU the model's Linear output head, if it has no bias, is replaced by a TransposedHead
    (once, in place: the model is meant for inference from then on).
    """

    def __init__(self, model):
        self.model = model
        head = model.get_output_embeddings()
        if model.device.type == "cpu" and type(head) is torch.nn.Linear and head.bias is None:
            model.set_output_embeddings(TransposedHead(head))
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


@dataclass
class Generated:
    """A batch of samples: token ids (batch, length), prompt included, and per generated position
    (batch, length - prompt length) the step's log p under the model, entropy and support size."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    entropies: torch.Tensor
    support_sizes: torch.Tensor

    def rows(self, selection) -> "Generated":
        return Generated(*(getattr(self, f.name)[selection] for f in fields(self)))

    def cpu(self) -> "Generated":
        return Generated(*(getattr(self, f.name).cpu() for f in fields(self)))

    @staticmethod
    def cat(parts: list["Generated"], pad_token: int) -> "Generated":
        """Batches one after another; rows of a batch that stopped early are padded."""
        length = max(part.tokens.shape[1] for part in parts)

        def joined(name, value):
            return torch.cat([F.pad(getattr(part, name), (0, length - part.tokens.shape[1]), value=value)
                              for part in parts])
        return Generated(joined("tokens", pad_token), joined("logprobs", 0.0),
                         joined("entropies", 0.0), joined("support_sizes", 0))


@torch.inference_mode()
def generate(model, prompt_ids, settings: RowSettings, uniforms, max_length, stop_token_id=None,
             candidates: int | None = CANDIDATES, on_step=None):
    """One sample per row of settings: a Generated batch.

    Position t >= 1 is drawn with uniforms[t - 1]. With stop_token_id set, generation ends once
    every row has produced it, and a row that has is filled with it from then on. candidates=None
    sorts the whole vocabulary at every step (the straightforward path; same tokens, slower).
    on_step(batch) is called after each position is drawn (a progress bar). This is
    the generic loop: any transformers causal LM, eagerly, with a growing cache (static_decode.py is
    the fast one).
    """
    lm = model if isinstance(model, CausalLM) else CausalLM(model)
    device = lm.model.device
    batch = len(settings)
    rows = max(batch, MIN_DECODE_ROWS)
    settings = settings.padded(rows).to(device)
    uniforms = uniforms.to(device)
    prompt_ids = prompt_ids.to(device)
    prompt_length = len(prompt_ids)

    tokens = torch.empty(rows, max_length, dtype=torch.long, device=device)
    tokens[:, :prompt_length] = prompt_ids
    steps = []
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    cache = lm.new_cache()
    # The prompt is the same for every sample: one forward at batch 1, its cache shared by all rows.
    logits = lm.last_logits(prompt_ids.unsqueeze(0), cache).expand(rows, -1)
    cache.batch_repeat_interleave(rows)
    end = max_length
    for position in range(prompt_length, max_length):
        step = candidate_step(logits, settings, uniforms[position - 1], candidates)
        steps.append(step)
        next_tokens = step.tokens
        if stop_token_id is not None:
            next_tokens = torch.where(finished, stop_token_id, next_tokens)
            finished |= next_tokens == stop_token_id
        tokens[:, position] = next_tokens
        if on_step is not None:
            on_step(batch)
        if position + 1 == max_length or (stop_token_id is not None and bool(finished.all())):
            end = position + 1
            break
        logits = lm.last_logits(next_tokens.unsqueeze(-1), cache)
    return Generated(
        tokens=tokens[:batch, :end],
        logprobs=torch.stack([step.logprobs for step in steps], dim=1)[:batch],
        entropies=torch.stack([step.entropies for step in steps], dim=1)[:batch],
        support_sizes=torch.stack([step.support_sizes for step in steps], dim=1)[:batch],
    )
