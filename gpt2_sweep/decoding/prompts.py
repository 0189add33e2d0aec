"""Which prompt each row of a batch continues: the distinct prompts once, each row an index into them."""
from dataclasses import dataclass

import torch


@dataclass
class PromptBatch:
    """The prompts of a batch's rows. Rows that continue one prompt share its prefix's forward."""

    ids: list[torch.Tensor]  # each distinct prompt's token ids, 1-D long, in order of first use
    of_row: torch.Tensor     # (rows,) long: which prompt each row continues

    @classmethod
    def single(cls, prompt_ids, rows: int) -> "PromptBatch":
        """One prompt for every row (a single-prompt run)."""
        return cls([torch.as_tensor(prompt_ids, dtype=torch.long)], torch.zeros(rows, dtype=torch.long))

    @classmethod
    def of(cls, row_prompts) -> "PromptBatch":
        """From each row's prompt ids; equal prompts become one."""
        distinct: dict[tuple, int] = {}
        of_row = [distinct.setdefault(tuple(int(i) for i in prompt), len(distinct)) for prompt in row_prompts]
        return cls([torch.tensor(prompt, dtype=torch.long) for prompt in distinct], torch.tensor(of_row, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.of_row)

    def rows(self, selection) -> "PromptBatch":
        """These rows (indices, a mask or a slice), keeping only the prompts they continue."""
        picked = self.of_row[selection].reshape(-1).tolist()
        kept = list(dict.fromkeys(picked))
        new_index = {old: new for new, old in enumerate(kept)}
        return PromptBatch([self.ids[old] for old in kept],
                           torch.tensor([new_index[old] for old in picked], dtype=torch.long))

    def padded(self, count: int) -> "PromptBatch":
        """The last row repeated until there are `count` rows."""
        return PromptBatch(self.ids, torch.cat([self.of_row, self.of_row[-1:].expand(count - len(self))]))

    def lengths(self) -> torch.Tensor:
        """Each distinct prompt's length."""
        return torch.tensor([len(ids) for ids in self.ids], dtype=torch.long)

    def longest(self) -> int:
        return max(len(ids) for ids in self.ids)

    def same_length(self) -> bool:
        """Whether every prompt has the same length: then no row needs padding."""
        return len({len(ids) for ids in self.ids}) == 1

    def left_padded(self, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct prompts right-aligned: (ids, real), each (prompts, longest); real marks the
        prompt's own tokens, the padding on their left is pad_id."""
        longest = self.longest()
        ids = torch.full((len(self.ids), longest), pad_id, dtype=torch.long)
        for index, prompt in enumerate(self.ids):
            ids[index, longest - len(prompt):] = prompt
        real = torch.arange(longest) >= (longest - self.lengths()).unsqueeze(-1)
        return ids, real

    def row_ids(self, row: int) -> torch.Tensor:
        return self.ids[int(self.of_row[row])]


def step_uniforms(vector: torch.Tensor, prompt_length: int, new_tokens: int) -> torch.Tensor:
    """The uniforms a row reads at its generated steps, from its vector u: step k draws the token at
    position prompt_length + k (prompt counted), which reads u[prompt_length + k - 1]."""
    if len(vector) < prompt_length - 1 + new_tokens:
        raise ValueError(f"{len(vector)} uniforms do not reach the last of {new_tokens} tokens after a prompt of "
                         f"{prompt_length}")
    return vector[prompt_length - 1:prompt_length - 1 + new_tokens]


def one_prompt(prompt_ids, vector: torch.Tensor, rows: int, new_tokens: int) -> tuple[PromptBatch, torch.Tensor]:
    """A single-prompt batch: every row continues prompt_ids and reads the one vector u, as
    (prompts, uniforms (rows, new_tokens))."""
    prompts = PromptBatch.single(prompt_ids, rows)
    return prompts, step_uniforms(vector, len(prompts.ids[0]), new_tokens).expand(rows, -1)
