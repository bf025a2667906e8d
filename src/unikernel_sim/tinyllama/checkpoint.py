"""llama2.c's checkpoint format (legacy export, run.c's read_checkpoint):

  header  7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
          (a negative vocab_size means the classifier is not shared with the embedding)
  float32 arrays, in this order (shapes as run.c's memory_map_weights):
    token_embedding_table (vocab_size, dim)
    rms_att_weight        (n_layers, dim)
    wq                    (n_layers, dim, n_heads * head_size)
    wk                    (n_layers, dim, n_kv_heads * head_size)   stored (layer, kv_dim, dim)
    wv                    (n_layers, dim, n_kv_heads * head_size)   stored (layer, kv_dim, dim)
    wo                    (n_layers, n_heads * head_size, dim)
    rms_ffn_weight        (n_layers, dim)
    w1                    (n_layers, hidden_dim, dim)
    w2                    (n_layers, dim, hidden_dim)
    w3                    (n_layers, hidden_dim, dim)
    rms_final_weight      (dim,)
    freq_cis_real, freq_cis_imag  (seq_len, head_size / 2) each: unused, skipped
    wcls                  (vocab_size, dim), only when not shared
Every matrix is (out, in), row-major: y[i] = sum_j W[i, j] x[j].
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from unikernel_sim.tinyllama.config import Config

HEADER = struct.Struct("<7i")
# llama2.c's export.py --version 1 (fp32) and 2 (Q8_0) start with this magic ("ak42"),
# a version int32 and a 256-byte header; only the legacy (version 0) layout is read here.
VERSIONED_EXPORT_MAGIC = 0x616B3432


@dataclass
class Weights:
    config: Config
    token_embedding: np.ndarray     # (vocab, dim)
    rms_att: np.ndarray             # (layer, dim)
    wq: np.ndarray                  # (layer, dim, dim)
    wk: np.ndarray                  # (layer, kv_dim, dim)
    wv: np.ndarray                  # (layer, kv_dim, dim)
    wo: np.ndarray                  # (layer, dim, dim)
    rms_ffn: np.ndarray             # (layer, dim)
    w1: np.ndarray                  # (layer, hidden, dim)
    w2: np.ndarray                  # (layer, dim, hidden)
    w3: np.ndarray                  # (layer, hidden, dim)
    rms_final: np.ndarray           # (dim,)
    wcls: np.ndarray                # (vocab, dim): the embedding itself when shared


def _shapes(c: Config) -> list[tuple[str, tuple[int, ...]]]:
    L = c.n_layers
    return [
        ("token_embedding", (c.vocab_size, c.dim)), ("rms_att", (L, c.dim)),
        ("wq", (L, c.dim, c.dim)), ("wk", (L, c.kv_dim, c.dim)), ("wv", (L, c.kv_dim, c.dim)),
        ("wo", (L, c.dim, c.dim)), ("rms_ffn", (L, c.dim)),
        ("w1", (L, c.hidden_dim, c.dim)), ("w2", (L, c.dim, c.hidden_dim)), ("w3", (L, c.hidden_dim, c.dim)),
        ("rms_final", (c.dim,)),
    ]


def parse_header(data: bytes) -> Config:
    if len(data) < HEADER.size:
        raise ValueError(f"checkpoint has {len(data)} bytes, shorter than its 28-byte header")
    if struct.unpack_from("<I", data)[0] == VERSIONED_EXPORT_MAGIC:
        version = struct.unpack_from("<i", data, 4)[0]
        raise ValueError(f"llama2.c export version {version} (magic 'ak42'); only the legacy layout is "
                         "supported: export with `python export.py --version 0` (llama2.c's run.c format)")
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = HEADER.unpack_from(data)
    config = Config(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len, shared_classifier=vocab > 0)
    config.validate()
    return config


def expected_size(config: Config) -> int:
    floats = sum(int(np.prod(shape)) for _, shape in _shapes(config))
    floats += config.seq_len * config.head_size          # freq_cis_real + freq_cis_imag
    if not config.shared_classifier:
        floats += config.vocab_size * config.dim
    return HEADER.size + 4 * floats


def read_checkpoint(data: bytes) -> Weights:
    config = parse_header(data)
    if len(data) < expected_size(config):
        raise ValueError(f"checkpoint has {len(data)} bytes; {config} needs {expected_size(config)}")
    floats = np.frombuffer(data, dtype="<f4", offset=HEADER.size)
    arrays = {}
    offset = 0
    for name, shape in _shapes(config):
        count = int(np.prod(shape))
        arrays[name] = floats[offset:offset + count].reshape(shape)
        offset += count
    offset += config.seq_len * config.head_size
    if config.shared_classifier:
        arrays["wcls"] = arrays["token_embedding"]
    else:
        arrays["wcls"] = floats[offset:offset + config.vocab_size * config.dim].reshape(config.vocab_size, config.dim)
    return Weights(config=config, **arrays)


def write_checkpoint(weights: Weights) -> bytes:
    c = weights.config
    vocab = c.vocab_size if c.shared_classifier else -c.vocab_size
    parts = [HEADER.pack(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, vocab, c.seq_len)]
    for name, shape in _shapes(c):
        array = np.asarray(getattr(weights, name), dtype="<f4")
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
        parts.append(array.tobytes())
    parts.append(np.zeros(c.seq_len * c.head_size, dtype="<f4").tobytes())     # unused freq_cis
    if not c.shared_classifier:
        parts.append(np.asarray(weights.wcls, dtype="<f4").tobytes())
    return b"".join(parts)


def synthetic_weights(config: Config, seed: int = 1234, scale: float = 0.08) -> Weights:
    """Deterministic random weights (numpy PCG64 from seed): the same config and seed
    give the same bytes on every machine."""
    config.validate()
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in _shapes(config):
        if name.startswith("rms"):
            arrays[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            arrays[name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    if config.shared_classifier:
        arrays["wcls"] = arrays["token_embedding"]
    else:
        arrays["wcls"] = (scale * rng.standard_normal((config.vocab_size, config.dim))).astype(np.float32)
    return Weights(config=config, **arrays)
