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
Summation order inside a dot product is not ggml's SIMD order, so logits agree to about
1e-4 relative, not bit for bit; greedy tokens agree (tests compare with llama.cpp's).
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

    def matvec(self, x: np.ndarray) -> np.ndarray:
        q, d, s = quantize_q8(x, with_sum=self.kind == "Q4_1")
        sums = np.einsum("rbk,bk->rb", self.q, q).astype(np.float32)                # integer dots per block
        if self.kind == "Q4_1":
            return ((self.d * d) * sums + self.m * s).sum(axis=1, dtype=np.float32)
        return ((self.d * d) * sums).sum(axis=1, dtype=np.float32)


def quantize_q8(x: np.ndarray, *, with_sum: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x in blocks of 32 as Q8_1 (with_sum) or Q8_0: int8 quants, float16 scale, float16 d*sum."""
    blocks = x.astype(np.float32).reshape(-1, BLOCK)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    inverse = np.where(amax > 0, 127.0 / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.rint(blocks * inverse[:, None]).astype(np.int32)
    d16 = d.astype(np.float16).astype(np.float32)
    s16 = (d * q.sum(axis=1)).astype(np.float16).astype(np.float32) if with_sum else np.zeros_like(d16)
    return q, d16, s16


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    mean = float(np.dot(x.astype(np.float64), x.astype(np.float64))) / x.size
    return (x * np.float32(1.0 / np.sqrt(mean + eps))).astype(np.float32) * weight


def rope(v: np.ndarray, pos: int, head_dim: int, base: float) -> np.ndarray:
    """llama's normal mode: rotate (v[2i], v[2i+1]) by pos * base^(-2i/head_dim)."""
    heads = v.reshape(-1, head_dim // 2, 2)
    theta = pos * base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    x0, x1 = heads[..., 0], heads[..., 1]
    return np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(v.shape).astype(np.float32)


class GgufModel:
    def __init__(self, path: str, context: int = 512) -> None:
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
            self.tensors[tensor.name] = np.array(tensor.data, dtype=np.float32) if kind == "F32" \
                else QuantMatrix(np.asarray(tensor.data), kind)
        self.output = self.tensors.get("output.weight", self.tensors["token_embd.weight"])   # tied
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
                scores = (keys[:, kv_head] @ queries[head]) * np.float32(1.0 / np.sqrt(c.head_dim))
                scores = np.exp(scores - scores.max())
                probs = (scores / scores.sum()).astype(np.float16).astype(np.float32)
                out[head] = probs @ values[:, kv_head]
            x = x + t[p + "attn_output.weight"].matvec(out.reshape(-1))
            h = rms_norm(x, t[p + "ffn_norm.weight"], c.eps)
            gate, up = t[p + "ffn_gate.weight"].matvec(h), t[p + "ffn_up.weight"].matvec(h)
            x = x + t[p + "ffn_down.weight"].matvec((gate / (1 + np.exp(-gate))) * up)
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
