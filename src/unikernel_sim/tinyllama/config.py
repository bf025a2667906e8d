"""Llama-2 architecture configurations (llama2.c's Config, plus the constants
llama2.c hard-codes: RMSNorm eps 1e-5, RoPE theta 10000)."""
from __future__ import annotations

from dataclasses import dataclass, replace

RMS_EPS = 1e-5
ROPE_THETA = 10000.0


@dataclass(frozen=True)
class Config:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool = True

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    def with_seq_len(self, seq_len: int) -> "Config":
        return replace(self, seq_len=seq_len)

    def parameter_count(self) -> int:
        d, h, l, v, kv = self.dim, self.hidden_dim, self.n_layers, self.vocab_size, self.kv_dim
        per_layer = 2 * d + d * d + 2 * d * kv + d * d + 3 * d * h
        return v * d + l * per_layer + d + (0 if self.shared_classifier else v * d)

    def validate(self) -> None:
        if min(self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads,
               self.vocab_size, self.seq_len) <= 0:
            raise ValueError(f"every dimension must be positive: {self}")
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads or self.head_size % 2:
            raise ValueError(f"dim, heads and kv heads do not divide evenly: {self}")


PRESETS: dict[str, Config] = {
    # TinyLlama-1.1B (the published architecture)
    "tinyllama-1.1b": Config(dim=2048, hidden_dim=5632, n_layers=22, n_heads=32, n_kv_heads=4,
                             vocab_size=32000, seq_len=2048),
    # llama2.c's 15M TinyStories shape, with synthetic weights in the benchmarks
    "stories15m": Config(dim=288, hidden_dim=768, n_layers=6, n_heads=6, n_kv_heads=6,
                         vocab_size=32000, seq_len=256),
    # small shapes for tests
    "tiny-mha": Config(dim=64, hidden_dim=160, n_layers=2, n_heads=4, n_kv_heads=4, vocab_size=96, seq_len=64),
    "tiny-gqa": Config(dim=64, hidden_dim=176, n_layers=3, n_heads=8, n_kv_heads=2, vocab_size=128, seq_len=64),
    "tiny-unshared": Config(dim=48, hidden_dim=128, n_layers=2, n_heads=6, n_kv_heads=3, vocab_size=80,
                            seq_len=48, shared_classifier=False),
}
