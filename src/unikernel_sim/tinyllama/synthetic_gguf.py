"""Small llama GGUF files with random weights, written with the `gguf` package's writer:
models the tests and the benchmarks can make in milliseconds, with any shape (a
TinyLlama-1.1B-shaped one too) and a byte-level BPE vocabulary (all 256 byte symbols,
ChatML's special tokens, a few merges), so that the guest's GGUF path runs without
downloading anything."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unikernel_sim.tinyllama.bpe_tokenizer import TOKEN_TYPE_CONTROL, byte_to_unicode

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
BOS_ID, EOS_ID = 1, 2                      # as SmolLM2: <|im_start|> and <|im_end|>
NORMAL_TOKEN = 1
MERGES = ("Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "e d", "Ġ w", "a t", "Ġ o", "e n", "i s",
          "Ġ c", "o r", "Ġ is", "Ġ f", "a r", "Ġ b")


@dataclass(frozen=True)
class GgufShape:
    dim: int = 64
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    context: int = 256
    weight_type: str = "Q4_1"               # the layers' matrices: Q4_1, Q8_0, F16 or F32
    embedding_type: str = "Q8_0"
    rope_base: float = 10000.0
    eps: float = 1e-5
    tied: bool = True


TINYLLAMA_1B = GgufShape(dim=2048, hidden=5632, layers=22, heads=32, kv_heads=4, context=2048)


def vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of the synthetic byte-level BPE vocabulary."""
    tokens = list(SPECIAL_TOKENS) + [byte_to_unicode()[b] for b in range(256)]
    for merge in MERGES:
        joined = merge.replace(" ", "")
        if joined not in tokens:
            tokens.append(joined)
    while len(tokens) % 32:                                     # a round vocabulary, as real ones
        tokens.append(f"<unused{len(tokens)}>")
    types = [TOKEN_TYPE_CONTROL if t in SPECIAL_TOKENS or t.startswith("<unused") else NORMAL_TOKEN for t in tokens]
    return tokens, types, list(MERGES)


def _matrix(rng: np.random.Generator, rows: int, n: int, kind: str, scale: float):
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    values = (rng.standard_normal((rows, n)) * scale).astype(np.float32)
    if kind == "F32":
        return values, None
    if kind == "F16":
        return values.astype(np.float16), None
    return quantize(values, GGMLQuantizationType[kind]), GGMLQuantizationType[kind]


def write_gguf(path: str | Path, shape: GgufShape = GgufShape(), seed: int = 0, filler_keys: int = 0) -> Path:
    """Writes a llama GGUF with shape's dimensions and random weights; returns its path.
    filler_keys: that many unused metadata entries before the model's own."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, types, merges = vocabulary()
    head_dim = shape.dim // shape.heads
    kv_dim = shape.kv_heads * head_dim
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("unikernel_sim synthetic")
    for index in range(filler_keys):
        writer.add_uint32(f"unikernel_sim.filler.{index}", index)
    writer.add_block_count(shape.layers)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.dim)
    writer.add_feed_forward_length(shape.hidden)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(shape.rope_base)
    writer.add_layer_norm_rms_eps(shape.eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)

    def add(name: str, rows: int, n: int, kind: str, scale: float) -> None:
        data, raw = _matrix(rng, rows, n, kind, scale)
        writer.add_tensor(name, data, raw_dtype=raw) if raw is not None else writer.add_tensor(name, data)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape.dim)).astype(np.float32))

    add("token_embd.weight", len(tokens), shape.dim, shape.embedding_type, 1.0)
    norm("output_norm.weight")
    if not shape.tied:
        add("output.weight", len(tokens), shape.dim, shape.embedding_type, 0.2)
    for layer in range(shape.layers):
        p, s = f"blk.{layer}.", 1.0 / np.sqrt(shape.dim)
        norm(p + "attn_norm.weight")
        norm(p + "ffn_norm.weight")
        for name, rows, n in (("attn_q", shape.dim, shape.dim), ("attn_k", kv_dim, shape.dim),
                              ("attn_v", kv_dim, shape.dim), ("attn_output", shape.dim, shape.dim),
                              ("ffn_gate", shape.hidden, shape.dim), ("ffn_up", shape.hidden, shape.dim),
                              ("ffn_down", shape.dim, shape.hidden)):
            add(p + name + ".weight", rows, n, shape.weight_type, s if n == shape.dim else 1.0 / np.sqrt(n))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
