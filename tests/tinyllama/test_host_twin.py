"""The host twin on its own: checkpoint and tokenizer formats, the reference
against llama2.c's published output for the real checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllama_support import CHECKPOINT_260K, TOKENIZER_512, needs_shared_data
from unikernel_sim.tinyllama.checkpoint import expected_size, parse_header, read_checkpoint, synthetic_weights, write_checkpoint
from unikernel_sim.tinyllama.config import PRESETS
from unikernel_sim.tinyllama.reference import ReferenceModel, XorShift, generate
from unikernel_sim.tinyllama.synthetic import synthetic_tokenizer
from unikernel_sim.tinyllama.tokenizer import Tokenizer


@pytest.mark.parametrize("name", ["tiny-mha", "tiny-gqa", "tiny-unshared"])
def test_checkpoint_round_trip(name):
    config = PRESETS[name]
    weights = synthetic_weights(config, seed=7)
    data = write_checkpoint(weights)
    assert len(data) == expected_size(config)
    vocab_field = int.from_bytes(data[20:24], "little", signed=True)
    assert vocab_field == (config.vocab_size if config.shared_classifier else -config.vocab_size)
    again = read_checkpoint(data)
    assert again.config == config
    for field in ("token_embedding", "wq", "wk", "w2", "rms_final", "wcls"):
        assert np.array_equal(getattr(again, field), getattr(weights, field))


def test_synthetic_weights_are_deterministic():
    config = PRESETS["tiny-gqa"]
    assert write_checkpoint(synthetic_weights(config, 3)) == write_checkpoint(synthetic_weights(config, 3))
    assert write_checkpoint(synthetic_weights(config, 3)) != write_checkpoint(synthetic_weights(config, 4))


def test_bad_headers_are_refused():
    with pytest.raises(ValueError, match="shorter than its 28-byte header"):
        parse_header(b"\0" * 10)
    with pytest.raises(ValueError, match="divide evenly"):
        parse_header(np.array([64, 128, 2, 5, 5, 32, 16], dtype="<i4").tobytes())
    # llama2.c export.py version_export(): uint32 magic "ak42" (0x616b3432), int32 version, then the params
    versioned = np.array([0x616B3432, 1, 64, 172, 5, 8, 4, 512, 512], dtype="<u4").tobytes()
    with pytest.raises(ValueError, match="export version 1 .* --version 0"):
        parse_header(versioned)


def test_xorshift_matches_llama2c():
    """random_u32 with state 1: values computed by hand from run.c's three shifts and multiply."""
    rng = XorShift(1)
    state = 1
    for _ in range(5):
        state ^= state >> 12
        state ^= (state << 25) & ((1 << 64) - 1)
        state ^= state >> 27
        assert rng.u32() == ((state * 0x2545F4914F6CDD1D) & ((1 << 64) - 1)) >> 32


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_synthetic_tokenizer_round_trips(text):
    tokenizer = synthetic_tokenizer()
    tokens = tokenizer.encode(text, bos=True)
    assert tokens[0] == 1
    assert tokenizer.decode(tokens) == text.encode("utf-8")


@needs_shared_data
def test_reference_reproduces_llama2c_greedy_output():
    """../shared/data/SOURCE.txt: run.c gives this for -t 0 -n 64 -i "Once upon a time"."""
    weights = read_checkpoint(CHECKPOINT_260K.read_bytes())
    tokenizer = Tokenizer.from_bytes(TOKENIZER_512.read_bytes(), weights.config.vocab_size)
    _, text = generate(ReferenceModel(weights), tokenizer, "Once upon a time", 64)
    assert text.decode() + "\n" == ("Once upon a time, there was a little girl named Lily. She loved to play "
                                    "outside in the park. One day, she saw a big, red ball. She wanted to play "
                                    "with it, but it was too high.\nLily\n")
