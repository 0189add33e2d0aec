"""triton_select's kernels (importing this module imports triton; triton.jit reads TRITON_INTERPRET here)."""
import triton
import triton.language as tl


@triton.jit
def key_masses(keys, BIAS: tl.constexpr, MANTISSA: tl.constexpr):
    """round_half_even(p * 2**28) in int32, p the float whose bits are `keys` (p in [0, 1]):
    p * 2**28 = significand * 2**(exponent - BIAS - MANTISSA + 28), a shift of the significand."""
    exponent = (keys >> MANTISSA) & (2 * BIAS + 1)
    significand = (keys & ((1 << MANTISSA) - 1)) | (1 << MANTISSA)
    # Left by up to 5 for float32 (p <= 1); the cap only keeps other keys (the padding) in range.
    left = tl.minimum(tl.maximum(exponent - (BIAS + MANTISSA - 28), 0), 5)
    # Right by at least 1; from MANTISSA + 2 on, every significand rounds to 0 (0 and the denormals too,
    # whose implicit bit is wrongly set here).
    right = tl.minimum(tl.maximum((BIAS + MANTISSA - 28) - exponent, 1), MANTISSA + 2)
    half = tl.full([], 1, dtype=keys.dtype) << (right - 1)
    # Adding half - 1, plus 1 where the kept part is odd, rounds the dropped bits half to even.
    rounded = (significand + half - 1 + ((significand >> right) & 1)) >> right
    return tl.where(exponent >= BIAS + MANTISSA - 28, significand << left, rounded).to(tl.int32)


@triton.jit
def reach(keys_ptr, limits_ptr, tokens_ptr, values_ptr, rows, vocab, KEY_BITS: tl.constexpr,
          BIAS: tl.constexpr, MANTISSA: tl.constexpr, UNIT_MASSES: tl.constexpr, RADIX: tl.constexpr,
          BLOCK: tl.constexpr):
    """Per row, the token (ties by id) and key at which the mass in descending key order first
    reaches the row's limit; each program takes the rows program_id, + programs, ... ."""
    digits = tl.arange(0, 2**RADIX)
    for row in range(tl.program_id(0), rows, tl.num_programs(0)):
        keys_row = keys_ptr + tl.cast(row, tl.int64) * vocab
        limit = tl.load(limits_ptr + row)
        value = tl.zeros([], dtype=keys_ptr.dtype.element_ty)  # the key found so far
        above = tl.zeros([], dtype=tl.int32)  # the mass of the keys beyond the digits found so far
        # From the top digit down; the last pass may overlap bits already found, where thresholds
        # past the answer never count.
        for step in range(0, (KEY_BITS + RADIX - 1) // RADIX):
            shift = tl.maximum(KEY_BITS - RADIX * (step + 1), 0)
            thresholds = value + (digits.to(value.dtype) << shift.to(value.dtype))
            at_or_above = tl.zeros([2**RADIX], dtype=tl.int32)
            for start in range(0, vocab, BLOCK):
                offsets = start + tl.arange(0, BLOCK)
                keys = tl.load(keys_row + offsets, mask=offsets < vocab, other=-1)  # -1: below every threshold
                if UNIT_MASSES:
                    counted = (keys[:, None] >= thresholds[None, :]).to(tl.int32)
                else:
                    masses = key_masses(keys, BIAS, MANTISSA)
                    counted = tl.where(keys[:, None] >= thresholds[None, :], masses[:, None], 0)
                at_or_above += tl.sum(counted, axis=0)
            # The limit was clamped to the row's total as the step computed it; the kernel's own total
            # (threshold 0 of the first pass) is the same sum, but a limit past it would pick nothing.
            limit = tl.minimum(limit, tl.max(at_or_above, axis=0))
            # Threshold 0 is the value found so far, whose mass always reaches the limit; the mass
            # at the first threshold past the chosen one (if any) is the mass beyond it.
            reached = at_or_above >= limit
            chosen = tl.sum(reached.to(tl.int32), axis=0) - 1
            above = tl.maximum(above, tl.max(tl.where(reached, 0, at_or_above), axis=0))
            value = value + (chosen.to(value.dtype) << shift.to(value.dtype))
        if UNIT_MASSES:
            each = tl.full([], 1, dtype=tl.int32)
        else:
            each = tl.maximum(key_masses(value, BIAS, MANTISSA), 1)
        rank = (limit - above + each - 1) // each  # 1-based among the tied tokens, in id order
        seen = tl.zeros([], dtype=tl.int32)
        token = tl.zeros([], dtype=tl.int64)
        for start in range(0, vocab, BLOCK):
            offsets = start + tl.arange(0, BLOCK)
            tied = (tl.load(keys_row + offsets, mask=offsets < vocab, other=-1) == value).to(tl.int32)
            through = tl.cumsum(tied, axis=0) + seen
            token += tl.sum(tl.where((tied == 1) & (through == rank), offsets.to(tl.int64), 0), axis=0)
            seen += tl.sum(tied, axis=0)
        tl.store(tokens_ptr + row, token)
        tl.store(values_ptr + row, value)


@triton.jit
def masses_of(keys_ptr, masses_ptr, count, BIAS: tl.constexpr, MANTISSA: tl.constexpr, BLOCK: tl.constexpr):
    """key_masses of each key, written out: what the select counts, for the tests to compare."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < count
    tl.store(masses_ptr + offsets, key_masses(tl.load(keys_ptr + offsets, mask=inside), BIAS, MANTISSA),
             mask=inside)
