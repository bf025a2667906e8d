"""Machine: one x86-64 CPU (Unicorn), RAM, the I/O bus and its devices, and the
virtual clock, plus the run loop that executes the guest and explains why it
stopped.

The run loop, top to bottom:
  1. arm the clock's instruction stop (budget) and the watchdog (timeout, Ctrl-C);
  2. emu_start from RIP until something stops it;
  3. classify the stop: a hook's verdict (I/O, exception, debug exit), a Unicorn
     error (invalid opcode, memory outside RAM), the budget, the watchdog, or a
     plain return - which Unicorn also does after `hlt` (issue 1082), recognised
     by the 0xF4 byte before RIP;
  4. either end the run with a Stop, or continue.
Hooks cover only I/O instructions, exceptions, invalid opcodes, unmapped
memory and narrow code ranges: nothing runs in Python per instruction.
"""
from __future__ import annotations

from typing import Callable

from unicorn import (
    UC_ERR_FETCH_UNMAPPED, UC_ERR_INSN_INVALID, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_UNMAPPED, UcError,
)
from unicorn import x86_const as x86

from unikernel_sim.console import ConsoleOutput
from unikernel_sim.cpu.engine import MSR_EFER, CpuState, create_engine, read_cpu_state
from unikernel_sim.cpu.vclock import VirtualClock
from unikernel_sim.cpu.vectors import vector_name
from unikernel_sim.devices.bus import IoBus
from unikernel_sim.devices.debug_exit import (
    DEBUG_CONSOLE_PORT, DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH, DebugConsole, DebugExit,
)
from unikernel_sim.devices.post_port import POST_PORT, PostPort
from unikernel_sim.devices.uart16550 import COM1_BASE, Uart16550
from unikernel_sim.errors import UsageError
from unikernel_sim.memory import paging
from unikernel_sim.memory.ram import MAX_MEMORY_MB, MIB, MIN_MEMORY_MB, Ram
from unikernel_sim.run_control import Watchdog
from unikernel_sim.stops import Stop, StopReason

RUN_UNTIL_NEVER = (1 << 64) - 1      # emu_start's `until`: an address no code reaches
HLT_OPCODE = 0xF4
DEFAULT_TSC_HZ = 2_000_000_000        # 2 GHz
DEFAULT_INSTRUCTIONS_PER_SECOND = 1_000_000_000   # deterministic mode: 1 ns per instruction
PANIC_SYMBOLS = ("kernel_panic", "panic")
MAX_UNEXPLAINED_RETURNS = 1000


class Machine:
    """A small PC. Create it, load a kernel (boot.loader or Machine.load), run it."""

    def __init__(
        self,
        memory_mb: int = 512,
        *,
        deterministic: bool = False,
        serial_input: bytes = b"",
        strict_io: bool = False,
        tsc_hz: int = DEFAULT_TSC_HZ,
        instructions_per_second: int = DEFAULT_INSTRUCTIONS_PER_SECOND,
    ) -> None:
        if not isinstance(memory_mb, int) or not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
            raise UsageError(
                f"memory size {memory_mb} MiB is out of range",
                where="--memory",
                hint=f"give {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MiB",
            )
        self.uc = create_engine()
        self.ram = Ram(self.uc, memory_mb * MIB)
        self.clock = VirtualClock(self.uc, deterministic=deterministic, tsc_hz=tsc_hz,
                                  instructions_per_second=instructions_per_second)
        if deterministic:
            self.clock.start_counting()
        self.serial = ConsoleOutput()
        self.debugcon = ConsoleOutput()
        self.bus = IoBus()
        self.uart = Uart16550(COM1_BASE, transmit=self.serial.write)
        self.uart.feed(serial_input)
        self.bus.attach(COM1_BASE, 8, self.uart)
        self.bus.attach(DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH, DebugExit(self._on_debug_exit))
        self.bus.attach(DEBUG_CONSOLE_PORT, 1, DebugConsole(self.debugcon.write))
        self.post = PostPort()
        self.bus.attach(POST_PORT, 1, self.post)
        self.strict_io = strict_io
        self.bus.on_unknown = self._on_unknown_port
        self.symbols = None
        self.kernel = None
        self.panic_message: str | None = None
        self.on_stop: list[Callable[[], None]] = []   # e.g. flush the terminal
        self._pending: Stop | None = None
        self._unmapped: tuple[int, int, int] | None = None
        self._install_hooks()

    # --- loading -------------------------------------------------------------
    def load(self, path: str, *, cmdline: str = "", modules=None):
        """Load a Multiboot2 kernel (and modules) and set the entry state."""
        from unikernel_sim.boot.loader import load_kernel
        from unikernel_sim.diagnostics.symbols import SymbolTable

        self.kernel = load_kernel(self, path, cmdline=cmdline, modules=modules)
        self.symbols = SymbolTable.from_elf_bytes(self.kernel.image_data) if self.kernel.elf else SymbolTable([])
        for name in PANIC_SYMBOLS:
            address = self.symbols.address_of(name)
            if address is not None:
                self.uc.hook_add(UC_HOOK_CODE, self._on_panic_call, begin=address, end=address)
                break
        return self.kernel

    # --- hooks -----------------------------------------------------------------
    def _install_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, x86.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, x86.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_instruction)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)

    def _on_in(self, uc, port: int, size: int, _user) -> int:
        return self.bus.read(port, size)

    def _on_out(self, uc, port: int, size: int, value: int, _user) -> None:
        self.bus.write(port, size, value)

    def _on_debug_exit(self, value: int) -> None:
        self._stop_now(Stop(StopReason.GUEST_EXIT, f"guest exit with value {value}", exit_value=value))

    def _on_unknown_port(self, kind: str, port: int, size: int, value: int) -> None:
        if self.strict_io:
            access = f"read of port {port:#x}" if kind == "in" else f"write of {value:#x} to port {port:#x}"
            self._stop_now(Stop(StopReason.STRICT_IO, f"--strict-io: {access}, which has no device"))

    def _on_interrupt(self, uc, vector: int, _user) -> None:
        # Full delivery through the guest IDT is the interrupts issue's job; until
        # then every exception and `int n` ends the run with its name and place.
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        cr2 = uc.reg_read(x86.UC_X86_REG_CR2) if vector == 14 else None
        detail = f" accessing {cr2:#x}" if cr2 is not None else ""
        self._stop_now(Stop(
            StopReason.EXCEPTION, f"unhandled {vector_name(vector)}{detail} at {self.describe(rip)}",
            rip=rip, where=self.describe(rip), vector=vector, fault_address=cr2,
        ))

    def _on_invalid_instruction(self, uc, _user) -> bool:
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        self._stop_now(Stop(
            StopReason.EXCEPTION, f"unhandled {vector_name(6)} at {self.describe(rip)}",
            rip=rip, where=self.describe(rip), vector=6,
        ))
        return False

    def _on_unmapped(self, uc, access: int, address: int, size: int, value: int, _user) -> bool:
        self._unmapped = (access, address, size)
        return False

    def _on_panic_call(self, uc, address: int, size: int, _user) -> None:
        message_address = uc.reg_read(x86.UC_X86_REG_RDI)
        text = self.read_virtual_c_string(message_address, 512)
        self.panic_message = text.decode("utf-8", errors="replace") if text is not None else "?"

    def request_stop(self, stop: Stop) -> None:
        """End the run with stop at the next opportunity (callable from hooks)."""
        self._stop_now(stop)

    def _stop_now(self, stop: Stop) -> None:
        if self._pending is None:
            self._pending = stop
        self.clock.note_stop_request()
        self.uc.emu_stop()

    # --- running ---------------------------------------------------------------
    def run(
        self,
        *,
        max_instructions: int | None = None,
        timeout: float | None = None,
        catch_sigint: bool = False,
    ) -> Stop:
        """Run the guest until it stops; returns why."""
        if max_instructions is not None:
            self.clock.start_counting()
            budget_end = self.clock.instructions + max_instructions
        else:
            budget_end = None
        unexplained = 0
        try:
            with Watchdog(self.uc, timeout=timeout, catch_sigint=catch_sigint,
                          on_stop=self.clock.note_stop_request) as watchdog:
                while True:
                    stop = self._run_slice(budget_end, watchdog)
                    if stop is not None:
                        return self._finish(stop)
                    unexplained += 1
                    if unexplained > MAX_UNEXPLAINED_RETURNS:
                        raise RuntimeError("Unicorn keeps returning without a reason at "
                                           f"{self.describe(self.rip)}")
        finally:
            for callback in self.on_stop:
                callback()

    def _run_slice(self, budget_end: int | None, watchdog: Watchdog) -> Stop | None:
        self._pending = None
        self._unmapped = None
        self.clock.arm_stop(budget_end)
        error = None
        try:
            self.uc.emu_start(self.rip, RUN_UNTIL_NEVER)
        except UcError as exc:
            error = exc
        if self._pending is not None:
            return self._pending
        if error is not None:
            return self._stop_for_error(error)
        if watchdog.interrupted:
            return self._stop_here(StopReason.INTERRUPTED, "interrupted (Ctrl-C)")
        if watchdog.timed_out:
            return self._stop_here(StopReason.TIMEOUT, f"wall-clock timeout of {watchdog.timeout:g} s expired")
        if self.clock.stopped_by_clock and budget_end is not None and self.clock.instructions >= budget_end:
            return self._stop_here(StopReason.BUDGET, f"instruction budget of {budget_end} reached")
        if self._after_hlt():
            return self._on_hlt()
        return None

    def _on_hlt(self) -> Stop:
        state = self.cpu_state()
        if not state.interrupts_enabled:
            return self._stop_here(StopReason.HALT, "halted (hlt with interrupts disabled)")
        return self._stop_here(StopReason.HALT, "halted (hlt with interrupts enabled, but no interrupt source)")

    def _after_hlt(self) -> bool:
        rip = self.rip
        data = self.read_virtual(rip - 1, 1) if rip else None
        return data is not None and data[0] == HLT_OPCODE

    def _stop_for_error(self, error: UcError) -> Stop:
        rip = self.rip
        where = self.describe(rip)
        if error.errno == UC_ERR_INSN_INVALID:
            return Stop(StopReason.EXCEPTION, f"unhandled {vector_name(6)} at {where}", rip=rip,
                        where=where, vector=6)
        if error.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED):
            access, address, size = self._unmapped or (None, 0, 0)
            kind = {UC_MEM_WRITE_UNMAPPED: "write to", UC_MEM_FETCH_UNMAPPED: "instruction fetch from"}.get(
                access, "read of")
            return Stop(
                StopReason.OUTSIDE_RAM,
                f"{kind} {address:#x} outside guest RAM (0..{self.ram.size:#x}) at {where}",
                rip=rip, where=where, fault_address=address,
            )
        return Stop(StopReason.EXCEPTION, f"CPU stopped: {error} at {where}", rip=rip, where=where)

    def _stop_here(self, reason: StopReason, summary: str) -> Stop:
        rip = self.rip
        return Stop(reason, f"{summary} at {self.describe(rip)}", rip=rip, where=self.describe(rip))

    def _finish(self, stop: Stop) -> Stop:
        if not stop.where:
            stop.rip = self.rip
            stop.where = self.describe(stop.rip)
        if self.panic_message is not None and stop.reason in (StopReason.GUEST_EXIT, StopReason.HALT):
            stop = Stop(StopReason.PANIC, f"guest panic: {self.panic_message}", rip=stop.rip,
                        where=stop.where, exit_value=stop.exit_value)
        return stop

    # --- state -----------------------------------------------------------------
    @property
    def rip(self) -> int:
        return self.uc.reg_read(x86.UC_X86_REG_RIP)

    def cpu_state(self) -> CpuState:
        return read_cpu_state(self.uc)

    @property
    def instructions(self) -> int | None:
        """Instructions executed, when the clock counts them (else None)."""
        return self.clock.instructions if self.clock.counting else None

    def describe(self, address: int) -> str:
        """``symbol+0x12 (0x100234)`` when the kernel has symbols, else the address."""
        if self.symbols is not None and len(self.symbols):
            name = self.symbols.describe(address)
            if not name.startswith("0x"):
                return f"{name} ({address:#x})"
        return f"{address:#x}"

    def translate(self, virtual: int) -> paging.Walk:
        """Walk the guest's page tables for virtual (identity when paging is off)."""
        uc = self.uc
        return paging.walk(
            virtual, uc.reg_read(x86.UC_X86_REG_CR0), uc.reg_read(x86.UC_X86_REG_CR3),
            uc.reg_read(x86.UC_X86_REG_CR4), uc.msr_read(MSR_EFER),
            lambda address: self.ram.u64(address) if self.ram.contains(address, 8) else None,
        )

    def read_virtual(self, virtual: int, length: int) -> bytes | None:
        """Bytes at a guest virtual address, or None where unmapped or outside RAM."""
        out = bytearray()
        while len(out) < length:
            walk = self.translate(virtual + len(out))
            if walk.physical is None:
                return None
            in_page = walk.page_size - (walk.physical % walk.page_size)
            chunk = min(length - len(out), in_page)
            if not self.ram.contains(walk.physical, chunk):
                return None
            out += self.ram.read(walk.physical, chunk)
        return bytes(out)

    def read_virtual_c_string(self, virtual: int, limit: int = 4096) -> bytes | None:
        out = bytearray()
        while len(out) < limit:
            byte = self.read_virtual(virtual + len(out), 1)
            if byte is None:
                return bytes(out) if out else None
            if byte == b"\0":
                break
            out += byte
        return bytes(out)
