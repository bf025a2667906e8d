"""Machine: a small PC, and the one object a user of the simulator holds.

A thin façade over the parts, each in its own module:
  uc, ram, memory     the CPU (Unicorn, cpu/engine.py), physical RAM, and virtual
                      memory through the guest's page tables (memory/)
  clock, host_timer   virtual time and the host-clock deadlines that stop a slice (cpu/)
  interrupts          exceptions, INT n and IRQs into the guest IDT (cpu/interrupts.py)
  board               the PC's devices and buses (devices/board.py)
  loop                the run loop (runloop.py)
  breakpoints         host breakpoints (breakpoints.py)
Guest calls (guest_call.py) and snapshots (snapshot.py) sit beside the run loop.
The machine never imports diagnostics: reports read the machine
(``diagnostics.report.build_report(machine, stop)``).
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_CODE
from unicorn import x86_const as x86

from unikernel_sim.arch import OPCODE_RET
from unikernel_sim.boot.layout import BIOS_ROM_START
from unikernel_sim.boot.symbols import SymbolTable
from unikernel_sim.breakpoints import Breakpoints
from unikernel_sim.watchpoints import Watchpoints
from unikernel_sim.console import ConsoleOutput
from unikernel_sim.cpu import cpuid
from unikernel_sim.cpu.alignment_guard import AlignmentGuard, code_regions, function_regions
from unikernel_sim.cpu.code_cache import CodeCache
from unikernel_sim.cpu.engine import CpuState, create_engine, probes_on, read_cpu_state
from unikernel_sim.cpu.fast_syscall import FastSystemCall
from unikernel_sim.cpu.control_register_guard import ControlRegisterGuard
from unikernel_sim.cpu.host_limits import check_address_space
from unikernel_sim.cpu.host_timer import HostTimer
from unikernel_sim.cpu.interrupts import InterruptPath
from unikernel_sim.cpu.msr_emulation import ModelSpecificRegisters
from unikernel_sim.cpu.red_zone_watch import RedZoneWatch
from unikernel_sim.cpu.unicorn_compat import GeneralRegisters, context_offsets, in_64bit_mode, run_to
from unikernel_sim.cpu.vclock import VirtualClock
from unikernel_sim.devices.board import BoardWiring, PcBoard
from unikernel_sim.devices.bus import IoBus
from unikernel_sim.devices.cmos_rtc import DEFAULT_START
from unikernel_sim.devices.mmio import MmioBus
from unikernel_sim.errors import UsageError
from unikernel_sim.memory import paging
from unikernel_sim.memory.guest_memory import GuestMemory
from unikernel_sim.memory.ram import MAX_MEMORY_MB, MIB, MIN_MEMORY_MB, Ram
from unikernel_sim.runloop import RunLoop
from unikernel_sim.stops import Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.boot.elf_image import ElfImage
    from unikernel_sim.boot.loader import LoadedKernel, ModuleSpec
    from unikernel_sim.snapshot import Snapshot

DEFAULT_TSC_HZ = 2_000_000_000        # 2 GHz
DEFAULT_INSTRUCTIONS_PER_SECOND = 1_000_000_000   # deterministic mode: 1 ns per instruction
PANIC_SYMBOLS = ("kernel_panic", "panic")
CALL_SENTINEL = BIOS_ROM_START + 0xE000   # guest calls return here: reserved in the memory map
MAX_RETURN_HOOKS = 2048               # Unicorn walks the code-hook list per hooked instruction
PANIC_MESSAGE_LIMIT = 512


class Machine:
    """A small PC. Create it, load a kernel (Machine.load), run it."""

    def __init__(
        self,
        memory_mb: int = 512,
        *,
        deterministic: bool = False,
        serial_input: bytes = b"",
        strict_io: bool = False,
        tsc_hz: int = DEFAULT_TSC_HZ,
        instructions_per_second: int = DEFAULT_INSTRUCTIONS_PER_SECOND,
        rtc_start: dt.datetime | None = None,
        check_red_zone: bool = True,
        check_returns: bool = False,
        cpu_model: str | None = None,
        alignment: str = "hardware",
    ) -> None:
        if not isinstance(memory_mb, int) or not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
            raise UsageError(f"memory size {memory_mb} MiB is out of range", where="--memory",
                             hint=f"give {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MiB")
        check_address_space(memory_mb * MIB)    # before Unicorn can exit the process over it
        self.uc = uc = create_engine()
        self.ram = Ram(uc, memory_mb * MIB)
        with probes_on(uc):     # on this engine before it runs anything: no engine of their own
            context_offsets()   # locate QEMU's exception fields before any exception can happen
            cpuid.qemu_leaf1()
        self.registers = GeneralRegisters(uc)          # RIP, RSP, GPRs without the binding's cost
        self.memory = GuestMemory(uc, self.ram)
        self.clock = VirtualClock(uc, deterministic=deterministic, tsc_hz=tsc_hz,
                                  instructions_per_second=instructions_per_second)
        self._decoders: dict[int, object] = {}
        self.clock.count_between = self._instructions_between
        if deterministic:
            self.clock.start_counting()
        self.host_timer = HostTimer(self.clock)
        self.code_cache = CodeCache(uc, self.ram)
        self.serial = ConsoleOutput()
        self.debugcon = ConsoleOutput()
        self.symbols = SymbolTable([])
        self.kernel: LoadedKernel | None = None
        self.panic_message: str | None = None
        self.interrupts = InterruptPath(uc, self.memory, self.clock, describe=self.describe, stop=self.request_stop)
        wiring = BoardWiring(
            now_ns=self.clock.now_ns, read_ram=self.ram.read,
            serial_out=self.serial.write, debugcon_out=self.debugcon.write,
            guest_exit=lambda value: self.request_stop(
                Stop(StopReason.GUEST_EXIT, f"guest exit with value {value}", exit_value=value)),
            power_off=lambda value, state: self.request_stop(
                Stop(StopReason.POWER_OFF, f"guest powered off (ACPI PM1a control {value:#06x}: {state})")),
            reset=lambda source: self.request_stop(
                Stop(StopReason.RESET, f"guest requested a system reset ({source})")),
            interrupt_changed=lambda: self.loop.interrupt_line_changed(),
            events_moved=lambda: self.loop.reschedule(),
            map_memory=lambda base, size, perms: self.ram.map_memory(base, size, perms, what="the framebuffer"),
            uart_fast_path=self._uart_fast_path,
            port_b_fast_path=self._port_b_fast_path,
        )
        start = rtc_start or (DEFAULT_START if deterministic else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        self.board = PcBoard(wiring, IoBus(), MmioBus(uc, self.ram.size), ram_size=self.ram.size,
                             serial_input=serial_input, rtc_start=start)
        self.loop = RunLoop(self)
        self.loop.strict_io = strict_io
        self.breakpoints = Breakpoints(self)
        self.watchpoints = Watchpoints(self)
        self.red_zone = RedZoneWatch(self) if check_red_zone else None
        self.check_returns = check_returns
        self._caller = None
        cpuid.install(uc, deterministic=deterministic, model=cpu_model,
                      apic_enabled=lambda: self.board.lapic.globally_enabled)
        self.fast_syscall = FastSystemCall(uc, self.memory, raise_fault=self.interrupts.raise_fault)
        self.msrs = ModelSpecificRegisters(self.board.lapic)
        self.control_registers = ControlRegisterGuard(uc, self.clock, self.interrupts.raise_fault, self.msrs)
        self.alignment = AlignmentGuard(uc, self.clock, self.interrupts.raise_fault, mode=alignment)

    def stream_serial_input(self, fd: int) -> None:
        """Type what arrives on fd (a FIFO, pipe or terminal) on COM1 while the guest runs."""
        from unikernel_sim.serial_stream import SerialInputStream

        self.loop.serial_stream = SerialInputStream(fd, notify=self.clock.request_async_stop)

    def _uart_fast_path(self, tx_plain: bool, lsr_value: int | None) -> None:
        loop = getattr(self, "loop", None)          # the UART publishes once before the loop exists
        if loop is not None:
            loop.fast_ports.publish_uart(tx_plain, lsr_value)

    def _port_b_fast_path(self, value: int | None, since_ns: int, until_ns: int | None) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.fast_ports.publish_port_b(value, since_ns, until_ns)

    # --- loading -------------------------------------------------------------------
    def load(self, path: str, *, cmdline: str = "", modules: list["ModuleSpec"] | None = None,
             deadline: float | None = None) -> "LoadedKernel":
        """Load a Multiboot2 kernel (and modules) and set the entry state; deadline
        (time.monotonic()) bounds the wait for inputs that are FIFOs or pipes."""
        from unikernel_sim.boot.loader import load_kernel

        parsed: list = []        # (symbols, the alignment guard's site search or None) once the ELF is read

        def search_sites(elf: "ElfImage", data: bytes) -> None:
            symbols = SymbolTable.from_elf(elf, data)
            regions = function_regions(elf, symbols)
            parsed.append((symbols, self.alignment.search(*regions) if regions is not None else None))

        self.kernel = kernel = load_kernel(self, path, cmdline=cmdline, modules=modules, deadline=deadline,
                                           on_elf=search_sites)
        if kernel.elf is not None:
            for segment in kernel.elf.segments:
                if segment.executable:
                    self.code_cache.watch(segment.paddr, segment.paddr + segment.memsz)
                    self.control_registers.watch(segment.vaddr, segment.data)
        else:
            start, end = kernel.load_base, kernel.layout.image_end
            self.control_registers.watch(start, self.ram.read(start, end - start))
        search = None
        if parsed:
            self.symbols, search = parsed[0]
        if search is not None:
            self.alignment.watch_sites(search.result())
        else:
            self.alignment.watch(*code_regions(kernel.elf, self.symbols, kernel.entry, self.ram.read,
                                               kernel.layout.image_end))
        if self.check_returns:
            self._watch_returns()
        for name in PANIC_SYMBOLS:
            address = self.symbols.address_of(name)
            if address is not None:
                self.uc.hook_add(UC_HOOK_CODE, self._on_panic_call, begin=address, end=address)
                break
        return self.kernel

    @property
    def alignment_violations(self) -> list[tuple[int, int, str]]:
        """(rip, operand address, instruction) of each misaligned SSE operand met."""
        return self.alignment.violations

    def _watch_returns(self) -> None:
        """A C hook on every `ret` of every function (for naming a return into nowhere).

        Without decoding the code (capstone costs ~40 ms to import), every 0xC3 byte
        inside a function gets a hook on its own address: a byte that is not an
        instruction start never fires. Opt-in (check_returns): Unicorn walks its whole
        code-hook list on every hooked instruction, so a thousand hooks make each
        `ret` cost microseconds (measured: TinyLlama 2.2 s instead of 0.3 s), and in
        deterministic mode, where every instruction is hooked, far more."""
        watched = 0
        for symbol in self.symbols.symbols:
            if symbol.kind != "STT_FUNC" or symbol.size == 0:
                continue
            body = self.memory.read(symbol.address, symbol.size) or b""
            offset = body.find(OPCODE_RET)
            while offset >= 0 and watched < MAX_RETURN_HOOKS:
                self.clock.watch_return(symbol.address + offset)
                watched += 1
                offset = body.find(OPCODE_RET, offset + 1)

    def _on_panic_call(self, uc, address: int, size: int, _user) -> None:
        text = self.memory.c_string(uc.reg_read(x86.UC_X86_REG_RDI), PANIC_MESSAGE_LIMIT)
        self.panic_message = text.decode("utf-8", errors="replace") if text is not None else "?"

    def type_keys(self, text: str) -> None:
        """Type text on the PS/2 keyboard (``{enter}``, ``{up}``... for named keys;
        ``{wait:TEXT}`` holds the rest back until the guest has printed TEXT)."""
        from unikernel_sim.keys import KeyScript, parse_key_script

        steps = parse_key_script(text)
        if all(step.wait_for is None for step in steps):
            for step in steps:
                self.board.keyboard.type_bytes(step.scancodes)
            return
        script = KeyScript(steps, self._type_now, self.board.vga.text)
        self.serial.listeners.append(script)
        self.debugcon.listeners.append(script)
        self.loop.key_scripts.append(script)

    def _type_now(self, scancodes: list[int]) -> None:
        """Keys released by a {wait:} step: typed from now on, at the usual pace."""
        keyboard = self.board.keyboard
        if not keyboard.typed:
            keyboard.next_key_at = max(keyboard.next_key_at, self.clock.now_ns())
        keyboard.type_bytes(scancodes)

    # --- running ---------------------------------------------------------------------
    def run(self, *, max_instructions: int | None = None, timeout: float | None = None,
            catch_sigint: bool = False) -> Stop:
        """Run the guest until it stops; returns why (runloop.py)."""
        return self.loop.run(max_instructions=max_instructions, timeout=timeout, catch_sigint=catch_sigint)

    def step(self, *, over_interrupts: bool = False) -> Stop:
        """Execute one instruction (StopReason.STEP), or less if something stops it first.
        A step of `hlt` (interrupts on) lasts until the CPU wakes: the waking interrupt's
        handler runs, and the step ends after the hlt. over_interrupts: an interrupt that
        arrives runs its whole handler first, as with the trap flag (gdb's stepi);
        otherwise the step may land on the handler's first instruction.
        Unicorn's emu_start(count=1) counts only code translated after its counting hook
        appeared (docs/unicorn-quirks.md Q23), so the translation cache is dropped first."""
        self.uc.ctl_flush_tb()
        self.loop.step_over_interrupts = over_interrupts
        try:
            return self.loop.run(step=True)
        finally:
            self.loop.step_over_interrupts = False

    def step_range(self, start: int, end: int) -> Stop:
        """Step once, then go on while RIP stays in [start, end) (gdb's range stepping:
        `next` over a source line in one request). Returns StopReason.STEP at the first
        instruction outside the range, not executed; or whatever stopped the run first
        (a breakpoint, a watchpoint, the guest's end). Interrupt handlers run whole
        inside it, as in a step (they are outside the range, but not where it leads)."""
        stop = self.step(over_interrupts=True)
        if stop.reason is not StopReason.STEP or not start <= self.rip < end:
            return stop
        with self.range_stepping(start, end):
            return self.run()

    @contextmanager
    def range_stepping(self, start: int, end: int):
        """Runs inside the with-block stop before the first instruction outside [start,
        end), interrupt handlers excepted (step_range; the reverse-execution history
        runs it in budgets)."""
        with self.breakpoints.outside(start, end):
            self.loop.step_over_interrupts = True
            try:
                yield
            finally:
                self.loop.step_over_interrupts = False

    def serve_gdb(self, host: str = "127.0.0.1", port: int = 1234, *, wait: bool = True,
                  say=print) -> Stop:
        """Run the guest with a gdb stub beside it (`unisim boot --gdb`, `--gdb-wait` with
        wait): gdb may attach, detach and kill as with QEMU's -s -S. Returns the final stop."""
        from unikernel_sim.debug.gdbstub import GdbServer, run_with_gdb

        server = GdbServer(self, host, port, say=say)
        try:
            return run_with_gdb(self, server, wait=wait, say=say)
        finally:
            server.close()

    def _instructions_between(self, start: int, end: int) -> int:
        """How many instructions lie in [start, end) of the code now running (the clock
        settles a stop inside a block with it): capstone's lengths, in the CPU's mode."""
        from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs

        code = self.memory.read(start, end - start)
        if not code:
            return 0
        bits = 64 if in_64bit_mode(self.uc) else 32
        if self._decoders.get(bits) is None:
            self._decoders[bits] = Cs(CS_ARCH_X86, CS_MODE_64 if bits == 64 else CS_MODE_32)
        return sum(1 for _ in self._decoders[bits].disasm_lite(code, start))

    def request_stop(self, stop: Stop) -> None:
        """End the run with stop at the next opportunity (callable from hooks)."""
        self.loop.request_stop(stop)

    def add_breakpoint(self, where: str | int) -> int:
        """Stop the run (StopReason.BREAKPOINT) when execution reaches where (symbol or address)."""
        return self.breakpoints.add(where)

    def remove_breakpoint(self, where: str | int) -> None:
        self.breakpoints.remove(where)

    def raise_fault(self, vector: int, error_code: int | None, rip: int) -> None:
        """From a hook: deliver a fault whose saved RIP is rip instead of executing it."""
        self.interrupts.raise_fault(vector, error_code, rip)

    def run_to(self, begin: int, end: int) -> None:
        """Run the engine from begin until end with no run loop (the boot hand-off's stub);
        the engine's exits mode makes end the run's one exit (docs/unicorn-quirks.md, Q1)."""
        run_to(self.uc, begin, end)

    # --- guest calls and snapshots -----------------------------------------------------
    def call(self, function: str | int, *args: int | float, returns: str = "int",
             max_instructions: int | None = None, timeout: float | None = 30.0) -> int | float:
        """Call a guest function by symbol or address (System V AMD64 ABI) and return
        RAX (``returns="int"``, ``"int32"``, ``"int64"``) or XMM0 (``"float"``,
        ``"double"``). Raises GuestCallError with the crash report if it does not return."""
        if self._caller is None:
            from unikernel_sim.guest_call import GuestCaller

            if self.kernel is None:
                raise RuntimeError("load a kernel before calling into it")
            self._caller = GuestCaller(self, CALL_SENTINEL)
            self.uc.ctl_flush_tb()
        return self._caller.call(function, args, returns=returns, max_instructions=max_instructions,
                                 timeout=timeout)

    def guest_call_returned(self, rip: int | None = None) -> bool:
        """Whether a guest call is running and has just returned to its sentinel (rip:
        where the guest is, if the caller has just read it)."""
        return self._caller is not None and self._caller.returned(rip)

    def snapshot(self) -> "Snapshot":
        """Everything needed to come back here: CPU, RAM (write-protected: memory/ram_snapshots.py),
        devices, clock."""
        self.clock.pause()
        from unikernel_sim.snapshot import take_snapshot     # at the first snapshot, not at start-up

        return take_snapshot(self)

    def restore(self, snapshot: "Snapshot", *, flush: bool = False) -> None:
        """Back to snapshot. flush=True also empties the translation cache, needed only
        if the guest ran code it generated outside its image (see cpu/code_cache.py)."""
        snapshot.restore_into(self, flush=flush)
        self.breakpoints.stopped_on(None)

    # --- state -----------------------------------------------------------------------
    @property
    def rip(self) -> int:
        return self.registers.read(x86.UC_X86_REG_RIP)

    def cpu_state(self) -> CpuState:
        return read_cpu_state(self.uc)

    @property
    def instructions(self) -> int | None:
        """Instructions executed, when the clock counts them (else None)."""
        return self.clock.instructions if self.clock.counting else None

    def describe(self, address: int) -> str:
        """``symbol+0x12 (0x100234)`` when the kernel has symbols, else the address."""
        if len(self.symbols):
            name = self.symbols.describe(address)
            if not name.startswith("0x"):
                return f"{name} ({address:#x})"
        return f"{address:#x}"

    def translate(self, virtual: int) -> paging.Walk:
        """Walk the guest's page tables for virtual (identity when paging is off)."""
        return self.memory.translate(virtual)

    def read_virtual(self, virtual: int, length: int) -> bytes | None:
        """Bytes at a guest virtual address, or None where unmapped or outside RAM."""
        return self.memory.read(virtual, length)

    def write_virtual(self, virtual: int, data: bytes) -> bool:
        """Write through the guest's page tables; False (nothing written) where unmapped."""
        return self.memory.write(virtual, data)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call callback whenever a run ends (e.g. flush the terminal)."""
        self.loop.on_stop.append(callback)
