"""The decode loop: prefill each distinct prompt once, then one token per step for the whole batch."""
import inspect
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from .ordering import CANDIDATES, candidate_step
from .prompts import PromptBatch
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

    def last_logits(self, input_ids, cache, attention_mask=None, position_ids=None):
        kwargs = {self.cache_argument: cache, "use_cache": True}
        if self.keeps_last_logits_only:
            kwargs["logits_to_keep"] = 1
        if attention_mask is not None:
            kwargs.update(attention_mask=attention_mask, position_ids=position_ids)
        return self.model(input_ids=input_ids, **kwargs).logits[:, -1]


@dataclass
class Generated:
    """A batch of samples: per row and generated step (batch, steps), the token drawn (the prompt
    is not included), its log p under the model, the entropy and the support size of the step."""

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


class PaddedRows:
    """The generic loop's left padding when a batch's prompts differ in length: the attention mask
    over every cached position and the next position of each row."""

    def __init__(self, prompts: PromptBatch, device):
        padded, real = prompts.left_padded()
        self.prompt_ids, self.prompt_mask = padded.to(device), real.long().to(device)
        self.prompt_positions = (self.prompt_mask.cumsum(dim=-1) - 1).clamp(min=0)
        of_row = prompts.of_row.to(device)
        self.mask = self.prompt_mask.index_select(0, of_row)
        self.next_positions = prompts.lengths().to(device).index_select(0, of_row).unsqueeze(-1)

    def step_arguments(self):
        """One more position for every row: (attention mask, position ids) of the next forward."""
        self.mask = F.pad(self.mask, (0, 1), value=1)
        positions = self.next_positions
        self.next_positions = positions + 1
        return self.mask, positions


def prefilled(lm: CausalLM, prompts: PromptBatch, rows: int, cache):
    """Each distinct prompt's forward, once, its cache then copied to the rows that continue it:
    the last prompt position's logits per row, and the left padding (None when every prompt has the
    same length)."""
    device = lm.model.device
    if len(prompts.ids) == 1:
        # One prompt for every row (today's runs): one forward at batch 1, its cache shared by all rows.
        logits = lm.last_logits(prompts.ids[0].to(device).unsqueeze(0), cache).expand(rows, -1)
        cache.batch_repeat_interleave(rows)
        return logits, None
    of_row = prompts.of_row.to(device)
    if prompts.same_length():
        logits = lm.last_logits(torch.stack(prompts.ids).to(device), cache)
        cache.batch_select_indices(of_row)
        return logits.index_select(0, of_row), None
    padding = PaddedRows(prompts, device)
    logits = lm.last_logits(padding.prompt_ids, cache, padding.prompt_mask, padding.prompt_positions)
    cache.batch_select_indices(of_row)
    return logits.index_select(0, of_row), padding


def padded_rows(values: torch.Tensor, count: int) -> torch.Tensor:
    """The last row repeated until there are `count` rows."""
    return torch.cat([values, values[-1:].expand(count - len(values), *values.shape[1:])])


@torch.inference_mode()
def generate(model, prompts: PromptBatch, settings: RowSettings, uniforms, new_tokens: int, stop_token_id=None,
             candidates: int | None = CANDIDATES, on_step=None):
    """One sample per row of settings, continuing the row's prompt: a Generated batch.

    Step k of row r draws with uniforms[r, k]. With stop_token_id set, generation ends once every
    row has produced it, and a row that has is filled with it from then on. candidates=None sorts
    the whole vocabulary at every step (the straightforward path; same tokens, slower). on_step(batch)
    is called after each step (a progress bar). This is the generic loop: any transformers causal LM,
    eagerly, with a growing cache (static_decode.py is the fast one); prompts of different lengths
    are left-padded, with an attention mask and each row's own positions.
    """
    lm = model if isinstance(model, CausalLM) else CausalLM(model)
    device = lm.model.device
    batch = len(settings)
    rows = max(batch, MIN_DECODE_ROWS)
    settings = settings.padded(rows).to(device)
    uniforms = padded_rows(uniforms, rows).to(device)
    tokens = torch.empty(rows, new_tokens, dtype=torch.long, device=device)
    steps = []
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    cache = lm.new_cache()
    logits, padding = prefilled(lm, prompts.padded(rows), rows, cache)
    for step_index in range(new_tokens):
        step = candidate_step(logits, settings, uniforms[:, step_index], candidates)
        steps.append(step)
        next_tokens = step.tokens
        if stop_token_id is not None:
            next_tokens = torch.where(finished, stop_token_id, next_tokens)
            finished |= next_tokens == stop_token_id
        tokens[:, step_index] = next_tokens
        if on_step is not None:
            on_step(batch)
        if step_index + 1 == new_tokens or (stop_token_id is not None and bool(finished.all())):
            break
        logits = lm.last_logits(next_tokens.unsqueeze(-1), cache, *(padding.step_arguments() if padding else ()))
    return Generated(
        tokens=tokens[:batch, :len(steps)],
        logprobs=torch.stack([step.logprobs for step in steps], dim=1)[:batch],
        entropies=torch.stack([step.entropies for step in steps], dim=1)[:batch],
        support_sizes=torch.stack([step.support_sizes for step in steps], dim=1)[:batch],
    )
