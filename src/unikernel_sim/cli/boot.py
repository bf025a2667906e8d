"""`unisim boot` and `unisim demo`: run a kernel with its output on the terminal."""
from __future__ import annotations

import argparse
import sys

from unikernel_sim.cli.files import open_output_file, read_optional_input
from unikernel_sim.console import StreamWriter
from unikernel_sim.diagnostics.report import build_report
from unikernel_sim.errors import UsageError
from unikernel_sim.run import BootResult, boot


def run_boot(args: argparse.Namespace) -> int:
    serial_input = read_optional_input(args.serial_in)
    if args.serial_in_text:
        serial_input += args.serial_in_text.encode("utf-8")
    stdout = StreamWriter(sys.stdout.buffer, flush_every_byte=sys.stdout.isatty())
    listeners = [stdout]
    flushers = [stdout.flush]
    serial_file = None
    if args.serial_out:
        serial_file = open_output_file(args.serial_out)
        file_writer = StreamWriter(serial_file)
        listeners.append(file_writer)
        flushers.append(file_writer.flush)
    try:
        result = boot(
            args.image,
            modules=args.module,
            cmdline=args.cmdline,
            memory_mb=args.memory,
            serial_input=serial_input,
            max_instructions=args.max_instructions,
            timeout=args.timeout,
            deterministic=args.deterministic,
            strict_io=args.strict_io,
            exit_style=args.exit_style,
            expect=args.expect,
            serial_listeners=listeners,
            debugcon_listeners=[stdout],
            on_stop=flushers,
            catch_sigint=True,
            keys=args.keys,
            rtc_start=args.rtc_time,
            tsc_hz=args.tsc_mhz * 1_000_000,
            trace_interrupts="int" in args.trace,
            trace=tuple(args.trace),
            alignment="strict" if args.strict_alignment else ("check" if args.check_alignment else None),
            check_returns=args.check_returns,
        )
    finally:
        if serial_file is not None:
            serial_file.close()
    report_end(result, verbose=args.verbose, report_json=args.report_json)
    show_screen(result, vga=args.vga, screenshot=args.screenshot)
    if "int" in args.trace:
        print_interrupt_trace(result)
    return result.exit_code


def show_screen(result: BootResult, *, vga: bool, screenshot: str | None) -> None:
    if vga:
        print("--- VGA text screen ---", file=sys.stderr)
        print(result.machine.board.vga.text(), file=sys.stderr)
    if screenshot:
        from unikernel_sim.devices.vga_render import save_png

        try:
            save_png(result.machine.board.vga, screenshot)
        except OSError as error:
            raise UsageError(f"cannot write the screenshot: {error.strerror}", where=screenshot) from None


def print_interrupt_trace(result: BootResult) -> None:
    """One line per delivered event, like QEMU's -d int."""
    for ns, label, rip, instructions in result.machine.interrupts.log:
        count = "" if instructions is None else f" insn={instructions}"
        print(f"int: t={ns}ns{count} {label} rip={rip:#x}", file=sys.stderr)


def report_end(result: BootResult, *, verbose: bool, report_json: str | None = None) -> None:
    """What stderr shows after the run: the crash report for an abnormal end (and
    any root-cause hint even for a normal one); nothing else unless verbose."""
    stop = result.stop
    report = None
    if stop.abnormal:
        report = build_report(result.machine, stop)
        print(f"unisim: {report.text()}", file=sys.stderr)
    elif result.machine.red_zone and result.machine.red_zone.hits or result.machine.alignment_violations:
        report = build_report(result.machine, stop)
        for hint in report.hints:
            print(f"unisim: warning: {hint.message}", file=sys.stderr)
    if report_json:
        _write_report_json(report, report_json)
    if stop.exit_value is not None and stop.exit_value != result.exit_code and verbose:
        print(f"unisim: guest wrote {stop.exit_value} to the debug-exit port", file=sys.stderr)
    if result.expect_matched is False:
        print("unisim: --expect pattern never appeared in the output", file=sys.stderr)
    if verbose:
        count = "not counted" if result.instructions is None else f"{result.instructions} instructions"
        print(f"unisim: {stop.summary}; exit status {result.exit_code}; {count}; "
              f"{result.wall_time:.3f} s", file=sys.stderr)
        bus = result.machine.board.io
        for kind, counter in (("read", bus.unknown_reads), ("write", bus.unknown_writes)):
            for port, count_ in sorted(counter.items()):
                print(f"unisim: unknown port {port:#06x}: {count_} {kind}(s)", file=sys.stderr)


def _write_report_json(report, path: str) -> None:
    text = report.to_json() if report is not None else "null"
    try:
        with open(path, "w") as handle:
            handle.write(text + "\n")
    except OSError as error:
        raise UsageError(f"cannot write the report: {error.strerror}", where=path) from None
