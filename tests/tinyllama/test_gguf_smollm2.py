"""SmolLM2-135M-Instruct (Q4_1) in the guest against llama.cpp's recording
(tests/data/llamacpp_reference/smollm2.json, recipe in record.py there) and the numpy twin.
Skips with the install line when the model is absent."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gguf_support import SMOLLM2, boot_gguf, needs_smollm2  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "llamacpp_reference" / "smollm2.json"
RECORDING = json.loads(REFERENCE.read_text())
FRANCE_IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]

pytestmark = needs_smollm2


@pytest.fixture(scope="module")
def guest(unisim_firmware):
    return boot_gguf(unisim_firmware, SMOLLM2, "ctx=64")


def test_the_guest_tokenizes_as_llama_cpp(guest):
    """ASCII, accents, digits, punctuation runs, spaces, newlines, tabs, emoji, CJK,
    contractions: the ids llama.cpp gave (text outside special tokens)."""
    for case in RECORDING["strings"]:
        assert guest.encode(case["text"]) == case["ids"], case["text"]
        assert b"".join(guest.decode(token) for token in case["ids"]) == case["text"].encode()


def test_the_guest_logits_equal_the_twin_and_llama_cpp_picks(guest, unisim_firmware):
    """The France prompt's first positions: every logit bit for bit the twin's, the twin
    being ggml's AVX2 arithmetic (its first logits are llama.cpp's own, bit for bit), and
    every one of the 30 layers' cached keys and values."""
    from gguf_support import kv_caches
    from unikernel_sim.tinyllama.gguf_reference import GgufModel

    state = guest.machine.snapshot()
    twin = GgufModel(SMOLLM2, context=64)
    try:
        for pos, token in enumerate(FRANCE_IDS[:5]):
            want, got = twin.forward(token, pos), guest.forward(token, pos)
            assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-3
            assert np.array_equal(got, want), pos
        keys, values = kv_caches(guest, unisim_firmware, 30, 5, 192, 64)
        assert np.array_equal(keys.view(np.uint16), twin.keys[:, :5].view(np.uint16))
        assert np.array_equal(values.view(np.uint16), twin.values[:, :5].view(np.uint16))
    finally:
        guest.machine.restore(state)


def _case(question: str) -> dict:
    return next(c for c in RECORDING["answers"] if c["question"] == question)


@pytest.mark.slow
@pytest.mark.parametrize("question,order", [
    ("What is the capital of France?", "avx2"),
    ("Show me a happy face emoji.", "blocks"),
    ("Write a long story about a dragon who learns to cook.", "blocks"),
])
def test_unisim_chat_answers_as_llama_cpp(capfdbinary, question, order):
    """Greedy, token for token, through the CLI: a 7-token answer that ends the turn, 48
    tokens of emoji (each character's bytes split over tokens, streamed whole), and a
    story cut at the 48-token limit."""
    from unikernel_sim.cli import main

    case = _case(question)
    args = ["chat", question, "--max-tokens", str(case["limit"])] + (["--dot", order] if order != "blocks" else [])
    assert main(args) == 0
    out, err = capfdbinary.readouterr()
    assert out.decode("utf-8") == case["answer"] + "\n"
    stop = "end of turn" if len(case["answer_ids"]) < case["limit"] else "max_tokens"
    assert f"answer {len(case['answer_ids'])} tokens".encode() in err and f"stop: {stop}".encode() in err


@pytest.mark.slow
def test_the_demo_answers_and_agrees_with_the_twin(capfdbinary):
    from unikernel_sim.cli import main

    assert main(["demo"]) == 0
    out, _ = capfdbinary.readouterr()
    assert b"guest:      The capital of France is Paris.\n" in out
    assert b"guest and numpy twin agree: yes" in out
