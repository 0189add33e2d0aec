"""What the benchmark scripts share: the model they measure and its start token."""
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
END_OF_TEXT = 50256


def benchmark_model(model_dir: str | None, device: str, dtype: torch.dtype):
    """A save_pretrained directory's model, or GPT-2 124M's shape with random weights (seed 0)."""
    torch.manual_seed(0)
    if model_dir:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    return GPT2LMHeadModel(GPT2Config()).to(device, dtype).eval()


def start_token(model) -> int:
    """BOS, or GPT-2's end of text where the model has none."""
    return model.config.bos_token_id if model.config.bos_token_id is not None else END_OF_TEXT
