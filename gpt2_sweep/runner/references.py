"""The human reference continuations of a prompt set under the model: each reference's token ids (up
to the run's new tokens) and the model's untempered log p of each token, teacher-forced after its
prompt, as the samples' token_logprobs are."""
import torch

from .prompts import Prompt


@torch.inference_mode()
def reference_logprobs(model, prompt_ids: list[int], reference_ids: list[int]) -> list[float]:
    """log p(reference token | prompt, the reference before it), one forward at batch 1, in float32."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + reference_ids], device=device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    picked = torch.tensor(reference_ids, device=device).unsqueeze(-1)
    return logits.log_softmax(-1).gather(-1, picked).squeeze(-1).tolist()


def scored_references(model, tokenizer, prompts: list[Prompt], prompt_ids: list[list[int]],
                      new_tokens: int) -> dict[int, dict]:
    """By prompt index: reference_tokens and reference_token_logprobs of every prompt with a
    non-empty reference (its first new_tokens tokens, so that it is measured as long as a sample)."""
    scored = {}
    for prompt, ids in zip(prompts, prompt_ids):
        reference = tokenizer.encode(prompt.reference)[:new_tokens] if prompt.reference else []
        if reference:
            scored[prompt.index] = {"reference_tokens": reference,
                                    "reference_token_logprobs": reference_logprobs(model, ids, reference)}
    return scored
