"""The numpy twin of a llama-architecture GGUF model as llama.cpp's CPU backend runs it:
the oracle the guest's GGUF inference will be checked against (issue 15).

The file is read with the `gguf` package. The arithmetic follows ggml's where it decides
the result, not just the shape of it:
  - a matrix with Q4_1 weights multiplies activations quantized to Q8_1 (blocks of 32:
    scale max|x|/127 and the scaled sum, both stored as float16; rounding to nearest even,
    as the AVX2 path does), a Q8_0 matrix activations quantized to Q8_0;
  - the KV cache is float16, and so are the query and the attention probabilities in the
    two attention products (ggml converts the F32 operand to the F16 one's type);
  - RMSNorm, RoPE (llama's "normal" mode: adjacent pairs), grouped-query attention,
    SwiGLU, and the output matrix tied to the token embeddings.
  - the quantized dot products add up in the order of ggml's AVX2 kernels, RMSNorm keeps
    ggml's float32 steps, and SiLU and softmax use ggml's vectorised expf: the logits of a
    first token are llama.cpp's bit for bit (checked against its own tensors).
  - the two attention products are ggml_vec_dot_f16's: 32 elements a step in four
    eight-lane accumulators, the value product over positions padded with zeros to whole
    steps (llama.cpp pads the cache).
Not reproduced: the tiling llama.cpp's batched matrix kernels use for a prompt, so later
logits can differ from llama.cpp's in the last bits and a near tie can go the other way
(tests/tinyllama/test_gguf_twin.py lists where). The guest computes exactly this file's
arithmetic: the tests compare the two bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32
Q4_1_BYTES = 20                       # float16 d, float16 m, 16 bytes of 4-bit quants
Q8_0_BYTES = 34                       # float16 d, 32 int8 quants


@dataclass
class Config:
    dim: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rope_base: float
    eps: float


class QuantMatrix:
    """Rows of Q4_1 or Q8_0 blocks, unpacked once into integers and scales."""

    def __init__(self, raw: np.ndarray, kind: str) -> None:
        rows = raw.shape[0]
        self.kind = kind
        self.order = "avx2"
        if kind == "Q4_1":
            blocks = raw.reshape(rows, -1, Q4_1_BYTES)
            self.d = blocks[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
            self.m = blocks[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
            packed = blocks[:, :, 4:]
            self.q = np.concatenate([packed & 0x0F, packed >> 4], axis=2).astype(np.int32)   # (rows, nb, 32)
        elif kind == "Q8_0":
            blocks = raw.reshape(rows, -1, Q8_0_BYTES)
            self.d = blocks[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
            self.q = blocks[:, :, 2:].copy().view(np.int8).astype(np.int32)
        else:
            raise ValueError(f"unsupported tensor type {kind}")

    def row(self, index: int) -> np.ndarray:
        """One row in float32 (ggml_get_rows dequantizes)."""
        if self.kind == "Q8_0":
            return (self.d[index][:, None] * self.q[index]).reshape(-1).astype(np.float32)
        return (self.d[index][:, None] * self.q[index] + self.m[index][:, None]).reshape(-1).astype(np.float32)

    def matvec(self, x: np.ndarray, order: str = "avx2") -> np.ndarray:
        """ggml's AVX2 dot products, in their order: per block, eight lanes of four integer
        products; the lanes gather d_w * d_x * lane by fused multiply-add over the blocks;
        a fixed tree adds the lanes; Q4_1 adds the sum of m_w * s_x kept beside.
        order "blocks": ggml's scalar kernels instead (see matvec_blocks)."""
        if (order if order != "avx2" else self.order) == "blocks":
            return self.matvec_blocks(x)
        q, d, s = quantize_q8(x, with_sum=self.kind == "Q4_1")
        lanes = np.einsum("rblk,blk->rbl", self.q.reshape(*self.q.shape[:2], 8, 4),
                          q.reshape(-1, 8, 4)).astype(np.float32)                    # (rows, blocks, 8)
        rows, blocks = self.q.shape[:2]
        acc = np.zeros((rows, 8), dtype=np.float32)
        mins = np.zeros(rows, dtype=np.float32)
        for block in range(blocks):
            scale = (self.d[:, block] * d[block]).astype(np.float32)                  # (rows,)
            acc = fma32(scale[:, None], lanes[:, block], acc)
            if self.kind == "Q4_1":
                mins = fma32(self.m[:, block], s[block], mins)
        half = (acc[:, :4] + acc[:, 4:]).astype(np.float32)                           # hsum_float_8
        pairs = (half[:, :2] + half[:, 2:]).astype(np.float32)
        total = (pairs[:, 0] + pairs[:, 1]).astype(np.float32)
        return (total + mins).astype(np.float32) if self.kind == "Q4_1" else total


    def matvec_blocks(self, x: np.ndarray) -> np.ndarray:
        """ggml's scalar dot products: per block the integer sum of the 32 products, then
        in float32 sum += (d_w * d_x) * sumi (+ m_w * s_x for Q4_1), block after block."""
        q, d, s = quantize_q8(x, with_sum=self.kind == "Q4_1")
        sumi = np.einsum("rbk,bk->rb", self.q, q).astype(np.float32)                  # (rows, blocks), exact
        scaled = ((self.d * d[None, :]).astype(np.float32) * sumi).astype(np.float32)
        if self.kind == "Q4_1":
            scaled = (scaled + (self.m * s[None, :]).astype(np.float32)).astype(np.float32)
        total = np.zeros(self.q.shape[0], dtype=np.float32)
        for block in range(scaled.shape[1]):
            total = (total + scaled[:, block]).astype(np.float32)
        return total


class FloatMatrix:
    """Rows of F32 or F16 weights: ggml_vec_dot_f32 / ggml_vec_dot_f16 (the activations
    first rounded to f16 for F16 weights, as ggml converts them to the weights' type)."""

    def __init__(self, data: np.ndarray, kind: str) -> None:
        self.kind = kind
        self.order = "avx2"
        self.values = data.astype(np.float32)                                         # (rows, n)

    def row(self, index: int) -> np.ndarray:
        return self.values[index].copy()

    def matvec(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float16).astype(np.float32) if self.kind == "F16" else x.astype(np.float32)
        return dot_f16_rows(self.values, x, order=self.order)


def quantize_q8(x: np.ndarray, *, with_sum: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x in blocks of 32 as Q8_1 (with_sum) or Q8_0: int8 quants, float16 scale, float16 d*sum."""
    blocks = x.astype(np.float32).reshape(-1, BLOCK)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    inverse = np.where(amax > 0, 127.0 / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.rint(blocks * inverse[:, None]).astype(np.int32)
    d16 = d.astype(np.float16).astype(np.float32)
    s16 = (d * q.sum(axis=1).astype(np.float32)).astype(np.float32).astype(np.float16).astype(np.float32) \
        if with_sum else np.zeros_like(d16)                 # d * sum rounded to float32, then to f16
    return q, d16, s16


# ggml's vectorised expf on x86 (AVX2 + FMA), the Arm optimized-routines algorithm: split
# x = n ln2 + b with n an integer, exp(b) by a degree-5 polynomial, times 2^n. The
# constants are that algorithm's; float32 throughout, with fused multiply-adds.
EXP_SHIFT = np.float32(float.fromhex("0x1.8p23"))
LOG2E = np.float32(float.fromhex("0x1.715476p+0"))
LN2_HI = np.float32(float.fromhex("0x1.62e4p-1"))
LN2_LO = np.float32(float.fromhex("0x1.7f7d1cp-20"))
EXP_POLY = [np.float32(float.fromhex(c)) for c in ("0x1.0e4020p-7", "0x1.573e2ep-5", "0x1.555e66p-3",
                                                   "0x1.fffdb6p-2", "0x1.ffffecp-1")]
EXP_UNDERFLOW, EXP_OVERFLOW = -103.97, 88.38


def fma32(a, b, c) -> np.ndarray:
    """a * b + c rounded once to float32 (the product is exact in double; the sum is
    rounded to double first, which differs from a true fma only in rare ties)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def ggml_expf(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):      # out-of-range lanes are replaced below
        return _ggml_expf(np.asarray(x, dtype=np.float32))


def _ggml_expf(x: np.ndarray) -> np.ndarray:
    z = fma32(x, LOG2E, EXP_SHIFT)
    n = (z - EXP_SHIFT).astype(np.float32)
    b = fma32(-n, LN2_LO, fma32(-n, LN2_HI, x))
    k = ((z.view(np.int32) << 23) + np.float32(1).view(np.int32)).astype(np.int32).view(np.float32)
    u = (b * b).astype(np.float32)
    c0, c1, c2, c3, c4 = EXP_POLY
    j = fma32(fma32(fma32(c0, b, c1), u, fma32(c2, b, c3)), u, (c4 * b).astype(np.float32))
    result = fma32(j, k, k)
    far = np.abs(n) > 126                      # ggml rescales there; these inputs are all but 0 or inf
    if far.any():
        result = np.where(far, np.exp(x.astype(np.float64)).astype(np.float32), result)
    result = np.where(x < EXP_UNDERFLOW, np.float32(0), result)
    return np.where(x > EXP_OVERFLOW, np.float32(np.inf), result).astype(np.float32)


def silu(x: np.ndarray) -> np.ndarray:
    """ggml_v_silu: x / (1 + exp(-x)), float32."""
    x = np.asarray(x, dtype=np.float32)
    return (x / (np.float32(1) + ggml_expf(np.float32(0) - x))).astype(np.float32)


DOT_STEP, DOT_ARRAYS, DOT_LANES = 32, 4, 8


def dot_f16_rows(rows: np.ndarray, x: np.ndarray, *, padded: bool = False, order: str = "avx2") -> np.ndarray:
    """ggml_vec_dot_f16 (and ggml_vec_dot_f32, the same order) of each row (float16 values
    given as float32, or float32 values) with x: per step of
    32, four accumulators of eight lanes gather fused multiply-adds; then accumulator 0+2
    and 1+3, then 0+1, the halves of the eight lanes, two horizontal adds; the elements
    after the last whole step are added in double. padded: the rows are first padded with
    zeros to whole steps (llama.cpp pads the KV cache), so there is no tail."""
    count, n = rows.shape
    rows, x = rows.astype(np.float32), x.astype(np.float32)
    if order == "blocks":                                   # ggml's scalar loop: float products, double sum
        products = (rows * x).astype(np.float32).astype(np.float64)
        total = np.zeros(count, dtype=np.float64)
        for i in range(n):
            total = total + products[:, i]
        return total.astype(np.float32)
    if padded:
        width = -(-n // DOT_STEP) * DOT_STEP
        rows, x, n = np.pad(rows, ((0, 0), (0, width - n))), np.pad(x, (0, width - n)), width
    whole = n - n % DOT_STEP
    acc = np.zeros((count, DOT_ARRAYS, DOT_LANES), dtype=np.float32)
    for step in range(0, whole, DOT_STEP):
        acc = fma32(rows[:, step:step + DOT_STEP].reshape(count, DOT_ARRAYS, DOT_LANES),
                    x[step:step + DOT_STEP].reshape(DOT_ARRAYS, DOT_LANES), acc)
    pair = (acc[:, :2] + acc[:, 2:]).astype(np.float32)
    one = (pair[:, 0] + pair[:, 1]).astype(np.float32)
    quarter = (one[:, :4] + one[:, 4:]).astype(np.float32)
    total = ((quarter[:, 0] + quarter[:, 1]).astype(np.float32)
             + (quarter[:, 2] + quarter[:, 3]).astype(np.float32)).astype(np.float64)
    for i in range(whole, n):                               # the tail, in double
        total = total + (rows[:, i] * x[i]).astype(np.float32).astype(np.float64)
    return total.astype(np.float32)


def softmax(scores: np.ndarray, scale: float) -> np.ndarray:
    """ggml_soft_max_ext without a mask: scaled, the maximum subtracted, ggml's expf, the sum
    in double, multiplied by its reciprocal."""
    scaled = (scores.astype(np.float32) * np.float32(scale)).astype(np.float32)
    values = ggml_expf((scaled - scaled.max()).astype(np.float32))
    total = float(values.astype(np.float64).sum())
    return (values * np.float32(1.0 / total)).astype(np.float32)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """ggml_rms_norm: squares in float32 summed in double, the mean and the scale in float32
    (a last-bit difference here moves Q8 quantization boundaries downstream)."""
    squares = (x.astype(np.float32) * x.astype(np.float32)).astype(np.float64)
    mean = np.float32(squares.sum() / x.size)
    scale = np.float32(1.0) / np.sqrt(np.float32(mean + np.float32(eps)), dtype=np.float32)
    return (x * scale).astype(np.float32) * weight


def rope(v: np.ndarray, pos: int, head_dim: int, base: float) -> np.ndarray:
    """llama's normal mode: rotate (v[2i], v[2i+1]) by pos * base^(-2i/head_dim)."""
    heads = v.reshape(-1, head_dim // 2, 2)
    theta = pos * base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    x0, x1 = heads[..., 0], heads[..., 1]
    return np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(v.shape).astype(np.float32)


class GgufModel:
    def __init__(self, path: str, context: int = 512, order: str = "avx2") -> None:
        """order: how quantized dot products add up, "avx2" (llama.cpp on x86) or "blocks"
        (ggml's scalar kernels; the guest's dot=blocks)."""
        if order not in ("avx2", "blocks"):
            raise ValueError(f"order {order!r}: give avx2 or blocks")
        self.order = order
        from gguf import GGUFReader

        reader = GGUFReader(path)

        def value(key: str):
            return reader.fields[key].parts[-1][0]

        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        if arch != "llama":
            raise ValueError(f"{path}: architecture {arch!r}, not llama")
        self.config = Config(dim=int(value("llama.embedding_length")), hidden=int(value("llama.feed_forward_length")),
                             layers=int(value("llama.block_count")), heads=int(value("llama.attention.head_count")),
                             kv_heads=int(value("llama.attention.head_count_kv")),
                             head_dim=int(value("llama.rope.dimension_count")),
                             vocab=int(value("llama.vocab_size")), rope_base=float(value("llama.rope.freq_base")),
                             eps=float(value("llama.attention.layer_norm_rms_epsilon")))
        self.tensors = {}
        for tensor in reader.tensors:
            kind = tensor.tensor_type.name
            data = np.asarray(tensor.data)
            if kind in ("F32", "F16"):
                self.tensors[tensor.name] = FloatMatrix(data, kind) if data.ndim == 2 else data.astype(np.float32)
            else:
                self.tensors[tensor.name] = QuantMatrix(data, kind)
        self.output = self.tensors.get("output.weight", self.tensors["token_embd.weight"])   # tied
        for tensor in list(self.tensors.values()) + [self.output]:
            if isinstance(tensor, (QuantMatrix, FloatMatrix)):
                tensor.order = order
        c = self.config
        kv = c.kv_heads * c.head_dim
        self.keys = np.zeros((c.layers, context, kv), dtype=np.float16)      # (layer, position, kv_dim)
        self.values = np.zeros((c.layers, context, kv), dtype=np.float16)

    def forward(self, token: int, pos: int) -> np.ndarray:
        """Logits after token at position pos (the cache holds positions < pos)."""
        c, t = self.config, self.tensors
        x = self.tensors["token_embd.weight"].row(token)                     # (dim,)
        group = c.heads // c.kv_heads
        for layer in range(c.layers):
            p = f"blk.{layer}."
            h = rms_norm(x, t[p + "attn_norm.weight"], c.eps)
            q = rope(t[p + "attn_q.weight"].matvec(h), pos, c.head_dim, c.rope_base)
            k = rope(t[p + "attn_k.weight"].matvec(h), pos, c.head_dim, c.rope_base)
            self.keys[layer, pos] = k.astype(np.float16)
            self.values[layer, pos] = t[p + "attn_v.weight"].matvec(h).astype(np.float16)
            keys = self.keys[layer, :pos + 1].astype(np.float32).reshape(pos + 1, c.kv_heads, c.head_dim)
            values = self.values[layer, :pos + 1].astype(np.float32).reshape(pos + 1, c.kv_heads, c.head_dim)
            queries = q.astype(np.float16).astype(np.float32).reshape(c.heads, c.head_dim)
            out = np.empty((c.heads, c.head_dim), dtype=np.float32)
            for head in range(c.heads):
                kv_head = head // group
                scores = dot_f16_rows(keys[:, kv_head], queries[head], order=self.order)
                probs = softmax(scores, 1.0 / np.sqrt(c.head_dim)).astype(np.float16).astype(np.float32)
                out[head] = dot_f16_rows(values[:, kv_head].T, probs, padded=True, order=self.order)
            x = x + t[p + "attn_output.weight"].matvec(out.reshape(-1))
            h = rms_norm(x, t[p + "ffn_norm.weight"], c.eps)
            gate, up = t[p + "ffn_gate.weight"].matvec(h), t[p + "ffn_up.weight"].matvec(h)
            x = x + t[p + "ffn_down.weight"].matvec((silu(gate) * up).astype(np.float32))
        return self.output.matvec(rms_norm(x, t["output_norm.weight"], c.eps))

    def greedy(self, prompt: list[int], max_tokens: int, stop: tuple[int, ...] = ()) -> list[int]:
        """The answer's token ids, greedy (argmax), up to max_tokens or a stop token."""
        logits = None
        for pos, token in enumerate(prompt):
            logits = self.forward(token, pos)
        answer: list[int] = []
        pos = len(prompt)
        while len(answer) < max_tokens:
            token = int(np.argmax(logits))
            if token in stop:
                break
            answer.append(token)
            logits = self.forward(token, pos)
            pos += 1
        return answer
