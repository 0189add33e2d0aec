"""GPT-2 and Llama-style forwards over a static KV cache, reading only its filled part.

`native(ids, columns, cache, length, first_row)` returns the last position's logits of the rows
ids, which are the cache's rows from first_row on, written at cache columns `columns`.

They run the Hugging Face model's own modules and weights (nothing is copied), but own the cache
and the attention: keys and values are written at device-side columns, and attention reads the
first `length` cache columns, a length the decode loop rounds up to a bucket. A row whose prompt is
shorter than the batch's longest starts its prompt further right (left padding): the cache keeps
each row's first column, so the row's positions start at 0 there and attention skips the padding.
Fixed shapes and no host synchronisation, so a step can be compiled or captured as a CUDA graph;
the attention mask is built once per forward, in the dtype attention reads, and grouped-query
attention reads the cache without repeating it.
Other model families take the generic loop (generation.py).
"""
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


class StaticCache:
    """Keys and values of every layer: (layers, batch, kv heads, max_length, head dim), allocated once.

    starts: (batch,) each row's first column, where its prompt begins; None when every row's is 0."""

    def __init__(self, layers, batch, kv_heads, max_length, head_dim, dtype, device, starts=None):
        shape = (layers, batch, kv_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.starts = starts

    def empty_like(self, batch, max_length, starts=None) -> "StaticCache":
        """Another cache for the same model, dtype and device, of `batch` rows and max_length columns."""
        layers, _, kv_heads, _, head_dim = self.keys.shape
        return StaticCache(layers, batch, kv_heads, max_length, head_dim, self.keys.dtype, self.keys.device, starts)

    def positions(self, columns, first_row, count):
        """The model's positions at `columns` of `count` rows from first_row: the columns less each
        row's start, (rows, columns); the columns themselves without starts. Padding reads 0."""
        if self.starts is None:
            return columns
        return (columns - self.starts[first_row:first_row + count].unsqueeze(-1)).clamp(min=0)

    def attention_mask(self, columns, length, first_row, count) -> torch.Tensor:
        """What each query column of `count` rows from first_row sees among the first `length` cache
        columns, as an additive mask in the cache's dtype (the one attention reads in): the columns at
        or before it, from the row's start on (a padding column sees itself only: no row of the
        softmax is empty). Built once per forward, shared by every layer."""
        cached = torch.arange(length, device=columns.device)
        visible = (cached <= columns.unsqueeze(-1)).view(1, 1, len(columns), length)
        if self.starts is not None:
            starts = self.starts[first_row:first_row + count].view(-1, 1, 1, 1)
            visible = visible & ((cached >= starts) | (cached == columns.unsqueeze(-1)))
        blocked = torch.tensor(float("-inf"), dtype=self.keys.dtype, device=columns.device)
        return torch.where(visible, torch.zeros((), dtype=self.keys.dtype, device=columns.device), blocked)

    def attend(self, layer, query, key, value, columns, mask, scale, first_row=0):
        """Write this step's keys and values at `columns` (of the rows from `first_row` on, one per
        query row), then attend from each query column to the first mask.shape[-1] cached columns
        through `mask` (attention_mask's)."""
        rows, length = slice(first_row, first_row + len(query)), mask.shape[-1]
        # Under autocast, keys may come in float32 (Llama's rotary promotes them) while attention reads
        # them in autocast's dtype, the cache's: stored as it will read them.
        self.keys[layer, rows].index_copy_(2, columns, key.to(self.keys.dtype))
        self.values[layer, rows].index_copy_(2, columns, value.to(self.values.dtype))
        keys, values = self.keys[layer, rows, :, :length], self.values[layer, rows, :, :length]
        return grouped_attention(query, keys, values, mask, scale)

    def take_prefix(self, prefix: "StaticCache", of_row: torch.Tensor, length: int) -> None:
        """Every row's first `length` columns from row of_row[row] of `prefix` (the prompts' cache)."""
        self.keys[:, :, :, :length] = prefix.keys[:, :, :, :length].index_select(1, of_row)
        self.values[:, :, :, :length] = prefix.values[:, :, :, :length].index_select(1, of_row)


def grouped_attention(query, keys, values, mask, scale):
    """SDPA of query (batch, heads, q, dim) over keys and values (batch, kv heads, length, dim). With
    fewer kv heads (grouped-query attention), each kv head's query heads are folded into its query
    positions, (batch, kv heads, group * q, dim): the cache is read as it is, never repeated."""
    batch, count, positions, dim = query.shape
    groups = count // keys.shape[1]
    if groups == 1:
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale)
    folded = query.reshape(batch, keys.shape[1], groups * positions, dim)
    if positions > 1:  # each folded position keeps its own column's mask (one column broadcasts)
        mask = mask.unsqueeze(2).expand(*mask.shape[:2], groups, *mask.shape[2:]).flatten(2, 3)
    attended = F.scaled_dot_product_attention(folded, keys, values, attn_mask=mask, scale=scale)
    return attended.view(batch, count, positions, dim)


def fast_attention(dtype: torch.dtype):
    """SDPA limited to its fused kernels (flash, memory-efficient, cuDNN), so that a fall-back to the
    math path (an upcast copy of every key and value) fails loudly instead of running slowly; float64,
    which only the math path takes on CUDA, is left to SDPA's choice."""
    if dtype == torch.float64:
        return nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION])


def heads(x, count):
    """(batch, positions, count * dim) -> (batch, count, positions, dim)."""
    return x.view(*x.shape[:2], count, -1).transpose(1, 2)


def merged(x):
    """(batch, heads, positions, dim) -> (batch, positions, heads * dim)."""
    return x.transpose(1, 2).flatten(2)


class NativeGPT2:
    """GPT2LMHeadModel's forward for ids at cache `columns`; the logits of the last position."""

    def __init__(self, model):
        self.model, self.body = model, model.transformer
        config = model.config
        self.heads, self.kv_heads = config.n_head, config.n_head
        self.head_dim = config.n_embd // config.n_head

    @staticmethod
    def supports(model) -> bool:
        config = model.config
        return (config.model_type == "gpt2" and hasattr(model, "transformer")
                and config.activation_function in ("gelu_new", "gelu_pytorch_tanh", "gelu")
                and not config.scale_attn_by_inverse_layer_idx and not config.reorder_and_upcast_attn
                and not getattr(config, "add_cross_attention", False))

    def __call__(self, ids, columns, cache, length, first_row=0):
        body = self.body
        x = body.wte(ids) + body.wpe(cache.positions(columns, first_row, len(ids)))
        mask = cache.attention_mask(columns, length, first_row, len(ids))
        for layer, block in enumerate(body.h):
            attention = block.attn
            query, key, value = attention.c_attn(block.ln_1(x)).split(attention.split_size, dim=-1)
            attended = cache.attend(layer, heads(query, self.heads), heads(key, self.heads),
                                    heads(value, self.heads), columns, mask, attention.scaling, first_row)
            x = x + attention.c_proj(merged(attended))
            x = x + block.mlp(block.ln_2(x))
        return self.model.get_output_embeddings()(body.ln_f(x[:, -1]))


def rotated(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class NativeLlama:
    """LlamaForCausalLM's forward (also SmolLM2) for ids at cache `columns`; the last position's logits."""

    def __init__(self, model):
        self.model, self.body = model, model.model
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    @staticmethod
    def supports(model) -> bool:
        config = model.config
        rope = getattr(config, "rope_parameters", None) or {}
        return (config.model_type == "llama" and hasattr(model, "model")
                and rope.get("rope_type", "default") == "default" and config.hidden_act == "silu"
                and not getattr(config, "attention_bias", False) and not getattr(config, "mlp_bias", False))

    def __call__(self, ids, columns, cache, length, first_row=0):
        body = self.body
        x = body.embed_tokens(ids)
        rotary = body.rotary_emb
        positions = cache.positions(columns, first_row, len(ids))
        frequencies = positions.unsqueeze(-1).float() * rotary.inv_freq.float()
        angles = torch.cat((frequencies, frequencies), dim=-1)
        if positions.dim() == 2:  # each row its own positions: broadcast over the heads
            angles = angles.unsqueeze(1)
        cos = (angles.cos() * rotary.attention_scaling).to(x.dtype)
        sin = (angles.sin() * rotary.attention_scaling).to(x.dtype)
        mask = cache.attention_mask(columns, length, first_row, len(ids))
        for layer, block in enumerate(body.layers):
            attention = block.self_attn
            h = block.input_layernorm(x)
            query = rotated(heads(attention.q_proj(h), self.heads), cos, sin)
            key = rotated(heads(attention.k_proj(h), self.kv_heads), cos, sin)
            attended = cache.attend(layer, query, key, heads(attention.v_proj(h), self.kv_heads), columns,
                                    mask, attention.scaling, first_row)
            x = x + attention.o_proj(merged(attended))
            x = x + block.mlp(block.post_attention_layernorm(x))
        return self.model.get_output_embeddings()(body.norm(x[:, -1]))


NATIVE_MODELS = (NativeGPT2, NativeLlama)


def native_model(model):
    """The native forward for this model's family, or None where there is none."""
    return next((native(model) for native in NATIVE_MODELS if native.supports(model)), None)
