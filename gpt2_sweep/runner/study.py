"""A study: every prompt crossed with its draws and every setting of the schedule, in one order, and
the vector of uniforms each (prompt, draw) shares."""
from dataclasses import dataclass

import torch

from ..decoding.sampling import sample_uniforms
from .prompts import Prompt
from .schedules import Setting


@dataclass(frozen=True)
class Group:
    """The samples of one (prompt, draw): they share one vector of uniforms and differ in settings only."""

    prompt: Prompt
    ids: list[int]  # the prompt's token ids (one BOS token for an empty prompt)
    draw: int


@dataclass
class Study:
    """Sample i is setting i % len(settings) of group i // len(settings); the groups run through
    the prompts in order and, for each prompt, its draws in order."""

    groups: list[Group]
    settings: list[Setting]
    new_tokens: int
    seed: int

    @classmethod
    def crossed(cls, prompts: list[Prompt], prompt_ids: list[list[int]], draws: int, settings: list[Setting],
                new_tokens: int, seed: int) -> "Study":
        groups = [Group(prompt, ids, draw) for prompt, ids in zip(prompts, prompt_ids) for draw in range(draws)]
        return cls(groups, list(settings), new_tokens, seed)

    def __len__(self) -> int:
        return len(self.groups) * len(self.settings)

    def group_of(self, samples: torch.Tensor) -> torch.Tensor:
        return samples // len(self.settings)

    def sample_settings(self) -> list[Setting]:
        """Every sample's settings, in sample order."""
        return self.settings * len(self.groups)

    def vector_length(self, group: Group) -> int:
        """Positions 1 to prompt + new tokens - 1 each read one uniform."""
        return len(group.ids) + self.new_tokens - 1

    def vectors(self) -> list[torch.Tensor]:
        """Each group's vector of uniforms (decoding.sampling.sample_uniforms)."""
        return [sample_uniforms(self.seed, group.prompt.index, group.draw, self.vector_length(group))
                for group in self.groups]

    def row_uniforms(self, vectors: list[torch.Tensor], groups: torch.Tensor) -> torch.Tensor:
        """The (rows, new_tokens) matrix the batched decode reads: new token k of a row of group g
        reads vectors[g][len(prompt) + k - 1], the uniform of its absolute position as in a run alone."""
        starts = [len(self.groups[group].ids) - 1 for group in groups.tolist()]
        return torch.stack([vectors[group][start:start + self.new_tokens]
                            for group, start in zip(groups.tolist(), starts)])
