"""A synthetic model and tokenizer for the demo and the tests: nothing to
download, the same bytes on every machine (numpy PCG64 from a seed)."""
from __future__ import annotations

from dataclasses import replace

from unikernel_sim.tinyllama.checkpoint import synthetic_weights, write_checkpoint
from unikernel_sim.tinyllama.config import PRESETS, Config
from unikernel_sim.tinyllama.tokenizer import Tokenizer

SPECIAL = [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
BYTES = [f"<0x{b:02X}>".encode() for b in range(256)]
CHARACTERS = [bytes([c]) for c in range(32, 127)] + [b"\n"]
MERGES = [b"th", b"he", b"in", b"er", b"an", b"re", b"on", b" t", b" a", b" s", b" w", b"nd", b"ou", b"ed",
          b"the", b" the", b"ing", b" and", b"ce", b" on", b"ay", b" day", b"Once", b" upon", b" time",
          b"Lily", b" was", b" play", b" park", b" ball"]


def synthetic_tokenizer() -> Tokenizer:
    """Byte fallback for everything, single characters, and a few scored merges
    (longer merges score higher, as BPE training tends to give)."""
    pieces = SPECIAL + BYTES + CHARACTERS + MERGES
    scores = [0.0] * (len(SPECIAL) + len(BYTES)) + [-1000.0] * len(CHARACTERS)
    scores += [float(len(piece) * 10 + i) for i, piece in enumerate(MERGES)]
    return Tokenizer(pieces, scores, max(len(p) for p in pieces))


def demo_config(name: str = "tiny-gqa") -> Config:
    return replace(PRESETS[name], vocab_size=len(synthetic_tokenizer().pieces))


def synthetic_files(config: Config, seed: int = 1234) -> tuple[bytes, bytes]:
    """(checkpoint bytes, tokenizer bytes) in llama2.c's formats."""
    return write_checkpoint(synthetic_weights(config, seed)), synthetic_tokenizer().to_bytes()
