"""How many samples fit in one batch on a GPU, from the model's shape and the free memory."""
import torch

# Per sample and vocabulary entry, the sampling step holds a few float32 rows (logits, softmax,
# sorted values, cumulative sums) and the int64 sort indices: 32 bytes is a safe bound (twice
# that when the sampling arithmetic runs in float64).
SAMPLING_BYTES_PER_VOCAB_ENTRY = 32
HEADROOM = 0.8  # of the memory left after the weights; activations and the allocator's slack


def kv_bytes_per_position(config, dtype: torch.dtype) -> int:
    """Bytes of KV cache one sample needs per sequence position."""
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def bytes_per_sample(config, max_length: int, dtype: torch.dtype) -> int:
    """KV cache and sampling buffers of one sample, for a model running in `dtype`."""
    sampling_scale = 2 if dtype == torch.float64 else 1
    return (kv_bytes_per_position(config, dtype) * max_length
            + SAMPLING_BYTES_PER_VOCAB_ENTRY * sampling_scale * config.vocab_size)


def fitting_batch_size(num_samples: int, free_bytes: int, weight_bytes: int, sample_bytes: int) -> int:
    """The largest batch, at most num_samples and at least 1, whose memory fits beside the weights."""
    usable = (free_bytes - weight_bytes) * HEADROOM
    return max(1, min(num_samples, int(usable // sample_bytes)))


def gpu_batch_size(model, num_samples: int, max_length: int, device_ids, dtype: torch.dtype) -> int:
    """batch_size=null on GPUs: what fits on the device with the least free memory, for the model
    as it will run (in `dtype`, which may differ from the dtype it was loaded in)."""
    ids = device_ids if isinstance(device_ids, list) else list(range(device_ids))
    free = min(torch.cuda.mem_get_info(i)[0] for i in ids)
    element_size = torch.empty((), dtype=dtype).element_size()
    weights = sum(p.numel() for p in model.parameters()) * element_size
    return fitting_batch_size(num_samples, free, weights, bytes_per_sample(model.config, max_length, dtype))
