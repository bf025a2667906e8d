"""``boot()``: load a kernel into a fresh Machine, run it, and say what happened.

This is the Python face of ``unisim boot``: the CLI only parses arguments,
streams output and prints the result.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from unikernel_sim.boot.loader import ModuleSpec
from unikernel_sim.errors import UsageError
from unikernel_sim.exit_codes import ExitCode, guest_exit_status
from unikernel_sim.machine import Machine
from unikernel_sim.records import Record, record_repr
from unikernel_sim.stops import EXIT_CODES, Stop, StopReason


class BootResult(Record):
    """What a boot ended with: why it stopped, the exit status and the guest's output."""

    stop: Stop
    exit_code: int                    # the process status `unisim boot` exits with
    serial_bytes: bytes
    debugcon_bytes: bytes
    instructions: int | None          # exact when counted (deterministic, budget), else None
    wall_time: float                  # seconds, load + run
    machine: Machine
    expect_matched: bool | None = None

    def __repr__(self) -> str:
        """Without the machine (its repr says nothing more than that it is one)."""
        return record_repr(self, hidden=("machine",))

    @property
    def exit_reason(self) -> StopReason:
        return self.stop.reason

    @property
    def guest_exit_value(self) -> int | None:
        return self.stop.exit_value

    @property
    def serial(self) -> str:
        return self.serial_bytes.decode("utf-8", errors="replace")

    @property
    def debugcon(self) -> str:
        return self.debugcon_bytes.decode("utf-8", errors="replace")


def boot(
    image: str,
    *,
    modules: Iterable[ModuleSpec | str] = (),
    cmdline: str = "",
    memory_mb: int = 512,
    serial_input: bytes = b"",
    max_instructions: int | None = None,
    timeout: float | None = None,
    deterministic: bool = False,
    strict_io: bool = False,
    exit_style: str = "plain",
    expect: str | None = None,
    serial_listeners: Iterable[Callable[[int], None]] = (),
    debugcon_listeners: Iterable[Callable[[int], None]] = (),
    on_stop: Iterable[Callable[[], None]] = (),
    catch_sigint: bool = False,
    keys: str | None = None,
    rtc_start=None,
    tsc_hz: int | None = None,
    trace_interrupts: bool = False,
    trace: tuple[str, ...] = (),
    alignment: str = "hardware",
    check_returns: bool = False,
    check_red_zone: bool = True,
    on_loaded: Iterable[Callable[[Machine], None]] = (),
    output_history: int | None = None,
    cpu: str | None = None,
    gdb: tuple[str, int, bool] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> BootResult:
    """Boot image as a Multiboot2 loader would and run it to its end.

    Raises SimError subclasses (UsageError, InputFileError, ImageError) for bad
    input before anything runs; guest misbehaviour is reported in the result.
    on_loaded callbacks run once every input has been read and loaded, before
    the guest starts: the place to open outputs (which must never be opened
    while an input that might be the same file is still unread). output_history:
    keep only the latest bytes of serial and 0xE9 output in the result (None: all)."""
    started = time.perf_counter()
    specs = [m if isinstance(m, ModuleSpec) else ModuleSpec.parse(m) for m in modules]
    options = {"tsc_hz": tsc_hz} if tsc_hz else {}
    machine = Machine(memory_mb, deterministic=deterministic, serial_input=serial_input,
                      strict_io=strict_io, rtc_start=rtc_start, check_returns=check_returns, cpu_model=cpu,
                      alignment=alignment, check_red_zone=check_red_zone, **options)
    machine.interrupts.trace = trace_interrupts
    if keys:
        try:
            machine.type_keys(keys)
        except ValueError as error:
            raise UsageError(str(error), where="--keys") from None
    machine.serial.keep = machine.debugcon.keep = output_history
    machine.serial.listeners.extend(serial_listeners)
    machine.debugcon.listeners.extend(debugcon_listeners)
    for callback in on_stop:
        machine.on_stop(callback)
    watcher = None
    if expect is not None:
        from unikernel_sim.expect import ExpectWatcher       # only with --expect

        watcher = ExpectWatcher(expect, on_match=lambda: machine.request_stop(
            Stop(StopReason.EXPECT_MATCHED, f"--expect matched {expect!r}")))
        machine.serial.listeners.append(watcher)
        machine.debugcon.listeners.append(watcher)
    deadline = None if timeout is None else time.monotonic() + timeout     # --timeout covers loading too
    machine.load(image, cmdline=cmdline, modules=specs, deadline=deadline)
    for callback in on_loaded:
        callback(machine)
    if "io" in trace:
        from unikernel_sim.tracing import trace_io

        trace_io(machine)
    if "calls" in trace:
        from unikernel_sim.tracing import trace_calls

        trace_calls(machine)
    if gdb is not None:
        stop = _run_under_gdb(machine, gdb, say)
    else:
        stop = machine.run(max_instructions=max_instructions, timeout=timeout, catch_sigint=catch_sigint)
    matched = watcher.check() if watcher is not None else None
    return BootResult(
        stop=stop,
        exit_code=exit_status(stop, exit_style, matched),
        serial_bytes=bytes(machine.serial.data),
        debugcon_bytes=bytes(machine.debugcon.data),
        instructions=machine.instructions,
        wall_time=time.perf_counter() - started,
        machine=machine,
        expect_matched=matched,
    )


def _run_under_gdb(machine: Machine, gdb: tuple[str, int, bool], say: Callable[[str], None]) -> Stop:
    """gdb = (host, port, wait for the client before the first instruction)."""
    from unikernel_sim.debug.gdbstub import GdbServer, run_with_gdb

    host, port, wait = gdb
    try:
        server = GdbServer(machine, host, port, say=say)
    except OSError as error:
        raise UsageError(f"cannot listen for gdb on {host}:{port}: {error.strerror}", where="--gdb",
                         hint="give a free port, e.g. --gdb 127.0.0.1:1235") from None
    try:
        return run_with_gdb(machine, server, wait=wait, say=say)
    finally:
        server.close()


def exit_status(stop: Stop, exit_style: str, expect_matched: bool | None) -> int:
    """The process status for a stop (docs/booting.md, "Exit codes")."""
    if stop.reason == StopReason.GUEST_EXIT:
        code = guest_exit_status(stop.exit_value or 0, exit_style)
    else:
        code = int(EXIT_CODES[stop.reason])
    if expect_matched is False and not stop.abnormal:
        return int(ExitCode.EXPECT_FAILED)
    return code
