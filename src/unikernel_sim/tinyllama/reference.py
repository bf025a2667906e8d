"""The numpy reference: llama2.c's forward pass, sampler and generation loop
(run.c) in float32, step for step, so the guest can be compared at each logit."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unikernel_sim.tinyllama.checkpoint import Weights
from unikernel_sim.tinyllama.config import RMS_EPS, ROPE_THETA
from unikernel_sim.tinyllama.tokenizer import BOS, Tokenizer

F32 = np.float32


def rmsnorm(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    scale = F32(1.0) / np.sqrt(np.mean(x * x, dtype=F32) + F32(RMS_EPS), dtype=F32)
    return (weight * (scale * x)).astype(F32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x), dtype=F32)
    return (e / np.sum(e, dtype=F32)).astype(F32)


@dataclass
class ReferenceModel:
    weights: Weights
    key_cache: np.ndarray = field(init=False)      # (layer, seq_len, kv_dim)
    value_cache: np.ndarray = field(init=False)    # (layer, seq_len, kv_dim)

    def __post_init__(self) -> None:
        c = self.weights.config
        self.key_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim), dtype=F32)
        self.value_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim), dtype=F32)

    def _rope(self, vector: np.ndarray, pos: int) -> np.ndarray:
        c = self.weights.config
        pairs = vector.reshape(-1, 2)
        head_dim = (np.arange(0, vector.size, 2) % c.head_size).astype(F32)
        freq = F32(1.0) / np.power(F32(ROPE_THETA), head_dim / F32(c.head_size), dtype=F32)
        angle = F32(pos) * freq
        cos, sin = np.cos(angle, dtype=F32), np.sin(angle, dtype=F32)
        out = np.empty_like(pairs)
        out[:, 0] = pairs[:, 0] * cos - pairs[:, 1] * sin
        out[:, 1] = pairs[:, 0] * sin + pairs[:, 1] * cos
        return out.reshape(-1)

    def forward(self, token: int, pos: int) -> np.ndarray:
        """Logits (vocab,) for token at position pos; fills the KV cache at pos."""
        w, c = self.weights, self.weights.config
        x = w.token_embedding[token].astype(F32).copy()
        kv_mul = c.n_heads // c.n_kv_heads
        scale = F32(np.sqrt(F32(c.head_size)))
        for layer in range(c.n_layers):
            xb = rmsnorm(x, w.rms_att[layer])
            q = self._rope(w.wq[layer] @ xb, pos)
            self.key_cache[layer, pos] = self._rope(w.wk[layer] @ xb, pos)
            self.value_cache[layer, pos] = w.wv[layer] @ xb
            heads = np.empty(c.dim, dtype=F32)
            for h in range(c.n_heads):
                kv = (h // kv_mul) * c.head_size
                q_h = q[h * c.head_size:(h + 1) * c.head_size]
                keys = self.key_cache[layer, :pos + 1, kv:kv + c.head_size]
                attention = softmax((keys @ q_h) / scale)
                heads[h * c.head_size:(h + 1) * c.head_size] = attention @ self.value_cache[
                    layer, :pos + 1, kv:kv + c.head_size]
            x = (x + w.wo[layer] @ heads).astype(F32)
            xb = rmsnorm(x, w.rms_ffn[layer])
            gate = w.w1[layer] @ xb
            gate = gate * (F32(1.0) / (F32(1.0) + np.exp(-gate, dtype=F32)))
            x = (x + w.w2[layer] @ (gate * (w.w3[layer] @ xb))).astype(F32)
        x = rmsnorm(x, w.rms_final)
        return (w.wcls @ x).astype(F32)


class XorShift:
    """llama2.c's random_u32 / random_f32 (xorshift*)."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self.MASK

    def u32(self) -> int:
        s = self.state
        s ^= s >> 12
        s ^= (s << 25) & self.MASK
        s ^= s >> 27
        self.state = s
        return ((s * 0x2545F4914F6CDD1D) & self.MASK) >> 32

    def f32(self) -> float:
        return float(F32(self.u32() >> 8) / F32(16777216.0))


def sample(logits: np.ndarray, temperature: float, topp: float, rng: XorShift) -> int:
    """run.c's sample(): argmax at temperature 0, else softmax(logits / T) and
    multinomial or top-p (nucleus) sampling with one coin from the rng."""
    if temperature == 0.0:
        return int(np.argmax(logits))
    probs = softmax((logits / F32(temperature)).astype(F32))
    coin = F32(rng.f32())
    if topp <= 0 or topp >= 1:
        cdf = F32(0.0)
        for index, p in enumerate(probs):
            cdf = F32(cdf + p)
            if coin < cdf:
                return index
        return len(probs) - 1
    cutoff = F32(F32(1.0) - F32(topp)) / F32(len(probs) - 1)        # float arithmetic, as run.c
    candidates = [(float(p), i) for i, p in enumerate(probs) if p >= cutoff]
    candidates.sort(key=lambda item: (-item[0], item[1]))       # descending, ties by index
    cumulative = F32(0.0)
    last = len(candidates) - 1
    for rank, (p, _) in enumerate(candidates):
        cumulative = F32(cumulative + F32(p))
        if cumulative > F32(topp):
            last = rank
            break
    r = F32(coin * cumulative)
    cdf = F32(0.0)
    for p, index in candidates[:last + 1]:
        cdf = F32(cdf + F32(p))
        if r < cdf:
            return index
    return candidates[last][1]


def printable(piece: bytes) -> bytes:
    """What llama2.c's safe_printf prints of a piece: a lone byte only when it is
    printable ASCII or whitespace (the guest prints the same way)."""
    if len(piece) == 1 and not (32 <= piece[0] <= 126 or piece in (b"\n", b"\t")):
        return b""
    return piece


def generate(model: ReferenceModel, tokenizer: Tokenizer, prompt: str, steps: int,
             temperature: float = 0.0, topp: float = 0.9, seed: int = 1) -> tuple[list[int], bytes]:
    """run.c's generate(): the tokens after the first and the text it prints."""
    rng = XorShift(seed)
    prompt_tokens = tokenizer.encode(prompt, bos=True)
    token = prompt_tokens[0]
    out_tokens, text = [], bytearray()
    for pos in range(min(steps, model.weights.config.seq_len)):
        logits = model.forward(token, pos)
        if pos < len(prompt_tokens) - 1:
            next_token = prompt_tokens[pos + 1]
        else:
            next_token = sample(logits, temperature, topp, rng)
        if next_token == BOS:
            break
        out_tokens.append(next_token)
        text += printable(tokenizer.decode_piece(token, next_token))
        token = next_token
    return out_tokens, bytes(text)
