"""`unisim boot`: run a kernel with its output on the terminal."""
from __future__ import annotations

import argparse
import os

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.cli.files import (
    is_stream, open_input_stream, open_output_stream, read_optional_input, refuse_clobbering, write_output_file,
)
from unikernel_sim.cli.profile import output_paths, request_from
from unikernel_sim.cli.terminal import say, stdout_writer
from unikernel_sim.console import StreamWriter
from unikernel_sim.errors import OutputError
from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.memory.ram import MIB
from unikernel_sim.run import BootResult, boot
from unikernel_sim.stops import Stop, StopReason


OUTPUT_HISTORY = 1 << 20      # bytes of guest output kept for the report (all of it streams out)


def run_boot(args: argparse.Namespace) -> int:
    refuse_clobbering(_inputs(args), _outputs(args))
    profiling = request_from(args, table=args.command == "profile")
    streamed = args.serial_in is not None and is_stream(args.serial_in)
    serial_input = b"" if streamed else read_optional_input(args.serial_in, limit=args.memory * MIB)
    if args.serial_in_text:
        serial_input += os.fsencode(args.serial_in_text)
    writers: list[StreamWriter] = []
    stdout = stdout_writer()
    writers.append(stdout)
    serial_file = None

    def open_serial_out(machine) -> None:
        nonlocal serial_file
        serial_file = open_output_stream(args.serial_out, "--serial-out")
        file_writer = StreamWriter(serial_file, name=args.serial_out,
                                   on_error=lambda writer: machine.request_stop(_output_stop(writer)))
        writers.append(file_writer)
        machine.serial.listeners.append(file_writer)
        machine.on_stop(file_writer.flush)

    def watch_stdout(machine) -> None:
        stdout.on_error = lambda writer: machine.request_stop(_output_stop(writer))

    def warn_about_header(machine) -> None:
        for warning in machine.kernel.header.warnings:
            say(f"unisim: warning: {args.image}: {warning}")

    def stream_serial_in(machine) -> None:
        machine.stream_serial_input(open_input_stream(args.serial_in, "serial input"))

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
            serial_listeners=[stdout],
            debugcon_listeners=[stdout],
            on_stop=[stdout.flush],
            catch_sigint=True,
            keys=args.keys,
            rtc_start=args.rtc_time,
            tsc_hz=args.tsc_mhz * 1_000_000,
            trace_interrupts="int" in args.trace,
            trace=tuple(args.trace),
            alignment=_alignment_mode(args),
            check_returns=args.check_returns,
            on_loaded=[warn_about_header, watch_stdout] + ([open_serial_out] if args.serial_out else [])
            + ([stream_serial_in] if streamed else []) + ([profiling.attach] if profiling.wanted else [])
            + ([_check_coverage_counters] if args.coverage else []),
            output_history=OUTPUT_HISTORY,
            cpu=args.cpu,
            gdb=_gdb_option(args),
            say=say,
        )
    finally:
        if serial_file is not None:
            try:
                serial_file.close()
            except OSError:
                pass
    profiling.finish(args, title=os.path.basename(args.image))
    if args.coverage:
        _write_coverage(result, args.coverage)
    report_end(result, verbose=args.verbose, report_json=args.report_json)
    show_screen(result, vga=args.vga, screenshot=args.screenshot)
    if "int" in args.trace:
        print_interrupt_trace(result)
    failures = [line for line in (writer.failure_line() for writer in writers) if line]
    if failures and result.stop.reason is not StopReason.OUTPUT_FAILED:
        for line in failures:
            say(f"unisim: {line}")
        return int(ExitCode.OUTPUT_FAILED)
    return result.exit_code


def _check_coverage_counters(machine) -> None:
    """--coverage on a kernel without counters: say so before it runs, not after."""
    from unikernel_sim.coverage.collect import counters_of

    counters_of(machine)


def _write_coverage(result: BootResult, directory: str) -> None:
    from unikernel_sim.coverage.collect import counters_of, write_coverage

    try:
        written = write_coverage(counters_of(result.machine), directory)
    except OSError as error:
        raise OutputError(f"cannot write the coverage files: {error.strerror}", where=directory) from None
    say(f"unisim: coverage of {len(written)} objects added to {directory}")


def _gdb_option(args: argparse.Namespace) -> tuple[str, int, bool] | None:
    if args.gdb is None and not args.gdb_wait:
        return None
    host, port = args.gdb or ("127.0.0.1", 1234)
    return host, port, args.gdb_wait


def _alignment_mode(args: argparse.Namespace) -> str:
    """--check-alignment and --no-alignment-check loosen the default (hardware's #GP)."""
    if args.check_alignment:
        return "check"
    if args.no_alignment_check and not args.strict_alignment:
        return "off"
    return "hardware"


def _inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    inputs = [("the kernel image", args.image)]
    inputs += [("--module", ModuleSpec.parse(spec).path) for spec in args.module]
    if args.serial_in:
        inputs.append(("--serial-in", args.serial_in))
    return inputs


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    named = (("--serial-out", args.serial_out), ("--report-json", args.report_json),
             ("--screenshot", args.screenshot))
    return [(option, path) for option, path in named if path] + output_paths(args)


def _output_stop(writer: StreamWriter) -> Stop:
    return Stop(StopReason.OUTPUT_FAILED, writer.failure_line() or f"cannot write {writer.name}")


def show_screen(result: BootResult, *, vga: bool, screenshot: str | None) -> None:
    """--vga prints the text screen (or says which graphics mode hides it);
    --screenshot saves what the monitor shows: the framebuffer in a graphics mode."""
    board = result.machine.board
    if vga:
        if board.vbe.enabled:
            width, height, bpp = board.vbe.mode
            say(f"--- VGA: in a {width}x{height}x{bpp} graphics mode (see --screenshot); text memory was ---")
        else:
            say("--- VGA text screen ---")
        say(board.vga.text())
    if screenshot:
        from unikernel_sim.devices.vga_render import png_bytes

        try:
            image = png_bytes(board.vga, board.vbe)
        except ValueError as error:
            raise OutputError(f"cannot render the screenshot: {error}", where=screenshot) from None
        write_output_file(screenshot, image, "screenshot")


def print_interrupt_trace(result: BootResult) -> None:
    """One line per delivered event, like QEMU's -d int."""
    for ns, label, rip, instructions in result.machine.interrupts.log:
        count = "" if instructions is None else f" insn={instructions}"
        say(f"int: t={ns}ns{count} {label} rip={rip:#x}")


def report_end(result: BootResult, *, verbose: bool, report_json: str | None = None) -> None:
    """What stderr shows after the run: the crash report for an abnormal end (and
    any root-cause hint even for a normal one); nothing else unless verbose. (The
    report's modules are imported only when a report is made: ~13 ms of start-up.)"""
    stop = result.stop
    report = None
    if stop.reason is StopReason.OUTPUT_FAILED:
        say(f"unisim: {stop.summary}")              # the host's problem, not the guest's: no crash report
    elif stop.abnormal:
        from unikernel_sim.diagnostics.report import build_report

        report = build_report(result.machine, stop)
        say(f"unisim: {report.text()}")
    elif result.machine.red_zone and result.machine.red_zone.hits or result.machine.alignment_violations:
        from unikernel_sim.diagnostics.report import build_report

        report = build_report(result.machine, stop)
        for hint in report.hints:
            say(f"unisim: warning: {hint.message}")
    if report_json:
        text = report.to_json() if report is not None else "null"
        write_output_file(report_json, (text + "\n").encode(), "report")
    if stop.exit_value is not None and stop.exit_value != result.exit_code and verbose:
        say(f"unisim: guest wrote {stop.exit_value} to the debug-exit port")
    if result.expect_matched is False:
        say("unisim: --expect pattern never appeared in the output")
    if verbose:
        count = "not counted" if result.instructions is None else f"{result.instructions} instructions"
        say(f"unisim: {stop.summary}; exit status {result.exit_code}; {count}; {result.wall_time:.3f} s")
        bus = result.machine.board.io
        for kind, counter in (("read", bus.unknown_reads), ("write", bus.unknown_writes)):
            for port, count_ in sorted(counter.items()):
                say(f"unisim: unknown port {port:#06x}: {count_} {kind}(s)")
