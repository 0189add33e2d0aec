"""How many samples fit in one batch, from the model's shape and the free memory: on a GPU, and
whether a run on the CPU fits in the machine's memory at all."""
import os
from dataclasses import dataclass

import torch

from .static_decode import cache_width

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
    """KV cache and sampling buffers of one sample, for a model running in `dtype`: max_length
    positions, or the static loop's cache width where its bucket makes that wider."""
    sampling_scale = 2 if dtype == torch.float64 else 1
    return (kv_bytes_per_position(config, dtype) * max(max_length, cache_width(max_length))
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


# On the CPU the eager sampler holds more per vocabulary entry (packed int64 sort keys and positions,
# int64 masses and their sums beside the float32 rows); each generated token's results are held
# until the end (tensors, then the artifact's lists and its JSON text).
CPU_SAMPLING_BYTES_PER_VOCAB_ENTRY = 64
RESULT_BYTES_PER_TOKEN = 256


def available_memory() -> int | None:
    """Bytes of memory the machine can give this process now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class CpuMemory:
    """What a run on the CPU holds: per process the weights and one batch's KV cache and sampling
    buffers; in all, every sample's results."""

    weight_bytes: int
    sample_bytes: int   # one row of a batch: KV cache and sampling buffers
    result_bytes: int   # every sample's results
    processes: int = 1

    def needed(self, batch_size: int) -> int:
        return self.processes * (self.weight_bytes + batch_size * self.sample_bytes) + self.result_bytes

    def fitting_batch_size(self, available: int) -> int:
        """The largest batch that fits in `available` bytes (HEADROOM of it), 0 where none does."""
        usable = available * HEADROOM - self.result_bytes - self.processes * self.weight_bytes
        return max(0, int(usable // (self.processes * self.sample_bytes)))


def cpu_memory(config, parameters: int, num_samples: int, max_length: int, new_tokens: int, dtype: torch.dtype,
               processes: int = 1) -> CpuMemory:
    element_size = torch.empty((), dtype=dtype).element_size()
    sampling_scale = 2 if dtype == torch.float64 else 1
    sample_bytes = (kv_bytes_per_position(config, dtype) * max_length
                    + CPU_SAMPLING_BYTES_PER_VOCAB_ENTRY * sampling_scale * config.vocab_size)
    return CpuMemory(parameters * element_size, sample_bytes, num_samples * new_tokens * RESULT_BYTES_PER_TOKEN,
                     processes)
