"""The artifact's text entries: settings, text, tokens, per-token data and metrics of each sample."""
import torch

from ..analysis.metrics import sample_metrics


def cut_at_stop(tokens: list[int], prompt_length: int, stop_token_id) -> list[int]:
    """Tokens up to and including the first generated stop token."""
    if stop_token_id is None or stop_token_id not in tokens[prompt_length:]:
        return tokens
    return tokens[:tokens.index(stop_token_id, prompt_length) + 1]


def sample_record(setting, generated, tokenizer, prompt_ids: list[int], stop_token_id,
                  axes=("temperature", "nucleus"), group=None) -> dict:
    """One entry of the artifact's texts: settings (those of `axes`), the prompt index and draw of a
    study's `group` (study.Group), text, tokens and metrics of a one-row batch of generated tokens."""
    prompt_length = len(prompt_ids)
    tokens = cut_at_stop(list(prompt_ids) + generated.tokens[0].tolist(), prompt_length, stop_token_id)
    steps = len(tokens) - prompt_length
    logprobs = generated.logprobs[0, :steps]
    return {
        "nucleus": setting.nucleus,
        "temperature": setting.temperature,
        **{name: getattr(setting, name) for name in axes if name not in ("temperature", "nucleus")},
        **({"prompt_index": group.prompt.index, "draw": group.draw} if group is not None else {}),
        "text": tokenizer.decode(tokens, skip_special_tokens=True),
        "continuation": tokenizer.decode(tokens[prompt_length:], skip_special_tokens=True),
        "tokens": tokens,
        "prompt_tokens": prompt_length,
        "metrics": sample_metrics(tokens[prompt_length:], logprobs.tolist(),
                                  generated.entropies[0, :steps].tolist(),
                                  generated.support_sizes[0, :steps].tolist()),
        "token_logprobs": shortest_floats(logprobs),
        "token_strings": token_strings(tokenizer, tokens[prompt_length:]),
        "token_kept": generated.support_sizes[0, :steps].tolist(),
    }


def shortest_floats(values: torch.Tensor) -> list[float]:
    """Each value as the shortest decimal that reads back as the same value of its dtype: float32
    log-probabilities take half the characters of their float64 repr, and lose nothing."""
    return [float(str(value)) for value in values.cpu().numpy()]


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """Each token decoded on its own, special tokens shown: ' fox' rather than byte-level BPE's
    'Ġfox'. A character split over several byte tokens shows as U+FFFD in each of them."""
    return tokenizer.batch_decode([[token] for token in ids], skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False)
