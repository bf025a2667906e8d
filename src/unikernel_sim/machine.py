"""Machine: one x86-64 CPU (Unicorn), RAM, the I/O bus and its devices, and the
virtual clock, plus the run loop that executes the guest and explains why it
stopped.

The run loop, top to bottom:
  1. bring the timed devices up to the current virtual time and, if the CPU
     takes interrupts (IF=1) and the PIC has a request, deliver it through the
     guest IDT;
  2. arm the next stop: the instruction budget and the next device event
     (deterministic mode: an exact instruction count in the C clock hook; fast
     mode: a host-clock deadline on the timer thread) - or none, and the guest
     runs free;
  3. emu_start from RIP until something stops it;
  4. classify the stop: a hook's verdict (debug exit, triple fault, --expect),
     a Unicorn error (memory outside RAM), the budget, the wall-clock timeout,
     Ctrl-C, a device deadline, or a plain return, which Unicorn also makes
     after `hlt` (issue 1082), recognised by the 0xF4 byte before RIP;
  5. end the run with a Stop, or go round again.
Hooks cover only I/O instructions, exceptions, invalid opcodes, unmapped
memory, RDTSC and narrow code ranges: nothing runs in Python per instruction.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from unicorn import (
    UC_ERR_FETCH_UNMAPPED, UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED, UC_MEM_WRITE_UNMAPPED, UcError,
)
from unicorn import x86_const as x86

from unikernel_sim.console import ConsoleOutput
from unikernel_sim.boot.layout import BIOS_ROM_START
from unikernel_sim.cpu import cpuid
from unikernel_sim.cpu.delivery import (
    KIND_EXCEPTION, KIND_EXTERNAL, KIND_SOFTWARE, DeliveryOutcome, Event, InterruptDelivery,
    error_code_for,
)
from unikernel_sim.arch import EFER_LMA, MSR, OPCODE_HLT, OPCODE_INT_IMM8, OPCODE_RET, RFLAGS_IF, Vector, short_name
from unikernel_sim.cpu.engine import CpuState, create_engine, read_cpu_state
from unikernel_sim.cpu.unicorn_compat import (
    RUN_UNTIL_NEVER,
    clear_exception_in_flight,
    context_offsets,
    interrupt_shadow,
    take_exception_info,
)
from unikernel_sim.cpu.fast_syscall import FastSystemCall
from unikernel_sim.cpu.code_cache import CodeCache
from unikernel_sim.cpu.host_timer import TIMEOUT, HostTimer
from unikernel_sim.cpu.vclock import VirtualClock, host_ns
from unikernel_sim.devices.acpi_power import (
    BOCHS_PM1A_CONTROL, PM1_CONTROL_WIDTH, QEMU_PM1A_CONTROL, AcpiPowerControl,
)
from unikernel_sim.devices.bus import IoBus
from unikernel_sim.devices.cmos_rtc import DEFAULT_START, CmosRtc
from unikernel_sim.devices.debug_exit import (
    DEBUG_CONSOLE_PORT, DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH, DebugConsole, DebugExit,
)
from unikernel_sim.devices.i8042 import I8042
from unikernel_sim.devices.i8254 import CHANNEL_PORTS, CONTROL_PORT, PORT_B, Pit8254, SystemControlPortB
from unikernel_sim.devices.i8259 import MASTER_COMMAND, SLAVE_COMMAND, PicPair
from unikernel_sim.devices.post_port import POST_PORT, PostPort
from unikernel_sim.devices.system_control_a import SYSTEM_CONTROL_A, SystemControlPortA
from unikernel_sim.devices.uart16550 import COM1_BASE, COM1_IRQ, Uart16550
from unikernel_sim.devices.vga_text import PORTS as VGA_PORTS
from unikernel_sim.devices.vga_text import VgaText
from unikernel_sim.diagnostics.red_zone_watch import RedZoneWatch
from unikernel_sim.errors import UsageError
from unikernel_sim.memory import paging
from unikernel_sim.memory.ram import MAX_MEMORY_MB, MIB, MIN_MEMORY_MB, Ram
from unikernel_sim.run_control import InterruptWatch
from unikernel_sim.stops import FaultStep, Stop, StopReason

DEFAULT_TSC_HZ = 2_000_000_000        # 2 GHz
DEFAULT_INSTRUCTIONS_PER_SECOND = 1_000_000_000   # deterministic mode: 1 ns per instruction
PANIC_SYMBOLS = ("kernel_panic", "panic")
MAX_UNEXPLAINED_RETURNS = 10_000      # emu_start returns in a row with no reason at all
PENDING_POLL_NS = 20_000              # IRQ pending but IF=0: look again this soon
IO_ACCESS_NS = 1_000                  # deterministic mode: virtual time per port access
CALL_SENTINEL = BIOS_ROM_START + 0xE000   # guest calls return here: reserved in the memory map
MAX_RETURN_HOOKS = 2048               # Unicorn walks the code-hook list per hooked instruction
IRQ_TIMER, IRQ_KEYBOARD = 0, 1
RED_ZONE_FRAME_REACH = 64             # a frame pushed on the interrupted stack lies within this


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
    ) -> None:
        if not isinstance(memory_mb, int) or not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
            raise UsageError(
                f"memory size {memory_mb} MiB is out of range",
                where="--memory",
                hint=f"give {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MiB",
            )
        context_offsets()   # locate QEMU's exception fields before any exception can happen
        self.uc = create_engine()
        self.ram = Ram(self.uc, memory_mb * MIB)
        self.clock = VirtualClock(self.uc, deterministic=deterministic, tsc_hz=tsc_hz,
                                  instructions_per_second=instructions_per_second)
        if deterministic:
            self.clock.start_counting()
        self.host_timer = HostTimer(self.uc)
        self.code_cache = CodeCache(self)
        self.delivery = InterruptDelivery(self)
        self.serial = ConsoleOutput()
        self.debugcon = ConsoleOutput()
        self.bus = IoBus()
        self._attach_devices(serial_input, rtc_start, deterministic)
        self.strict_io = strict_io
        self.bus.on_unknown = self._on_unknown_port
        self.symbols = None
        self.kernel = None
        self.panic_message: str | None = None
        self.on_stop: list[Callable[[], None]] = []          # e.g. flush the terminal
        self.interrupt_log: list[tuple[int, str, int, int | None]] = []  # (ns, event, rip, insn) when tracing
        self.trace_interrupts = False
        self.irq_count = 0
        self.last_exception: tuple[int, int | None, int, int | None] | None = None  # vector, error, rip, cr2
        self.last_exception_registers: dict[str, int] | None = None
        self._caller = None
        self._breakpoints: dict[int, int] = {}
        self.red_zone = RedZoneWatch(self) if check_red_zone else None
        self.alignment_violations: list[tuple[int, int, str]] = []    # (rip, operand address, text)
        self._alignment = None
        self._pending_fault: Event | None = None
        self._debug_info = None
        self.check_returns = check_returns
        self._pending: Stop | None = None
        self._service_requested = False
        self._unmapped: tuple[int, int, int] | None = None
        self._install_hooks()

    # --- devices -------------------------------------------------------------------
    def _attach_devices(self, serial_input: bytes, rtc_start: dt.datetime | None, deterministic: bool) -> None:
        now = self.clock.now_ns
        self.pic = PicPair(on_change=self._on_interrupt_line_change)
        self.pic.power_on_state()
        self.bus.attach(MASTER_COMMAND, 2, _Synced(self.pic.master, self._advance_devices))
        self.bus.attach(SLAVE_COMMAND, 2, _Synced(self.pic.slave, self._advance_devices))
        self.pit = Pit8254(now, irq0=lambda: self.pic.pulse_irq(IRQ_TIMER))
        self.pit.on_reprogram = self._reschedule
        self.pit.power_on_state()
        self.bus.attach(CHANNEL_PORTS[0], 4, self.pit)
        assert CONTROL_PORT == CHANNEL_PORTS[0] + 3
        self.bus.attach(PORT_B, 1, SystemControlPortB(self.pit))
        start = rtc_start or (DEFAULT_START if deterministic else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        self.rtc = CmosRtc(now, start=start, ram_bytes=self.ram.size)
        self.bus.attach(0x70, 2, self.rtc)
        self.keyboard = I8042(now, irq1=lambda: self.pic.pulse_irq(IRQ_KEYBOARD),
                              reset=lambda: self._on_reset_request("keyboard controller"))
        self.bus.attach(0x60, 1, self.keyboard)
        self.bus.attach(0x64, 1, self.keyboard)
        self.port_a = SystemControlPortA(on_reset=lambda: self._on_reset_request("port 0x92 fast reset"))
        self.bus.attach(SYSTEM_CONTROL_A, 1, self.port_a)
        self.vga = VgaText(self.ram.read, now)
        for port in VGA_PORTS:
            self.bus.attach(port, 1, self.vga)
        self.uart = Uart16550(COM1_BASE, transmit=self.serial.write,
                              irq_line=lambda level: self.pic.set_irq(COM1_IRQ, level))
        self.uart.feed(serial_input)
        self.bus.attach(COM1_BASE, 8, self.uart)
        self.bus.attach(DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH, DebugExit(self._on_debug_exit))
        self.bus.attach(DEBUG_CONSOLE_PORT, 1, DebugConsole(self.debugcon.write))
        self.post = PostPort()
        self.bus.attach(POST_PORT, 1, self.post)
        for port in (QEMU_PM1A_CONTROL, BOCHS_PM1A_CONTROL):
            self.bus.attach(port, PM1_CONTROL_WIDTH, AcpiPowerControl(self._on_power_off))

    def type_keys(self, text: str) -> None:
        """Type text on the PS/2 keyboard (``{enter}``, ``{up}``... for named keys)."""
        from unikernel_sim.devices.scancodes import text_scancodes

        self.keyboard.type_bytes(text_scancodes(text))

    # --- loading -------------------------------------------------------------------
    def load(self, path: str, *, cmdline: str = "", modules=None):
        """Load a Multiboot2 kernel (and modules) and set the entry state."""
        from unikernel_sim.boot.loader import load_kernel
        from unikernel_sim.diagnostics.symbols import SymbolTable

        self.kernel = load_kernel(self, path, cmdline=cmdline, modules=modules)
        if self.kernel.elf is not None:
            for segment in self.kernel.elf.segments:
                if segment.executable:
                    self.code_cache.watch(segment.paddr, segment.paddr + segment.memsz)
        self.symbols = (SymbolTable.from_elf(self.kernel.elf, self.kernel.image_data) if self.kernel.elf
                        else SymbolTable([]))
        if self.check_returns:
            self._watch_returns()
        for name in PANIC_SYMBOLS:
            address = self.symbols.address_of(name)
            if address is not None:
                self.uc.hook_add(UC_HOOK_CODE, self._on_panic_call, begin=address, end=address)
                break
        return self.kernel

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
            body = self.read_virtual(symbol.address, symbol.size) or b""
            offset = body.find(OPCODE_RET)
            while offset >= 0 and watched < MAX_RETURN_HOOKS:
                self.clock.watch_return(symbol.address + offset)
                watched += 1
                offset = body.find(OPCODE_RET, offset + 1)

    def last_return(self) -> int | None:
        """Address of the latest function-final `ret` executed, or None."""
        return self.clock.last_return()

    def debug_info(self):
        """Source lines and call-frame information of the kernel (None without an ELF)."""
        if self._debug_info is None and self.kernel is not None and self.kernel.elf is not None:
            from unikernel_sim.diagnostics.debug_info import debug_info_for

            self._debug_info = debug_info_for(self.kernel.image_data)
        return self._debug_info

    def report(self, stop: Stop | None = None):
        """The report for stop, or for the machine as it is now (diagnostics/report.py):
        .text(), .to_json(), .hints."""
        from unikernel_sim.diagnostics.report import build_report

        if stop is None:
            stop = Stop(StopReason.BREAKPOINT, f"report requested at {self.describe(self.rip)}", rip=self.rip,
                        where=self.describe(self.rip))
        return build_report(self, stop)

    def check_alignment(self, *, strict: bool) -> None:
        """Watch SSE instructions that need aligned operands (see diagnostics/alignment.py);
        strict: raise the #GP(0) hardware would."""
        from unikernel_sim.diagnostics.alignment import AlignmentWatch

        self._alignment = AlignmentWatch(self, strict)

    def raise_general_protection(self, rip: int) -> None:
        """From a code hook: deliver #GP(0) at rip instead of executing it."""
        self.raise_fault(Vector.GP, 0, rip)

    def raise_fault(self, vector: int, error_code: int | None, rip: int) -> None:
        """From a hook: stop, then deliver a fault whose saved RIP is rip (the run loop
        delivers it, so whatever RIP Unicorn leaves behind does not matter)."""
        self._pending_fault = Event(vector, KIND_EXCEPTION, error_code, rip)
        self.clock.note_stop_request()
        self.uc.emu_stop()

    # --- guest calls, breakpoints, snapshots ---------------------------------------
    def call(self, function: str | int, *args: int | float, returns: str = "int",
             max_instructions: int | None = None, timeout: float | None = 30.0) -> int | float:
        """Call a guest function by symbol or address (System V AMD64 ABI) and return
        RAX (``returns="int"``, ``"int32"``, ``"int64"``) or XMM0 (``"float"``,
        ``"double"``). Raises GuestCallError with the crash report if it does not return."""
        from unikernel_sim.guest_call import GuestCaller

        if self._caller is None:
            if self.kernel is None:
                raise RuntimeError("load a kernel before calling into it")
            self._caller = GuestCaller(self, CALL_SENTINEL)
            self.uc.ctl_flush_tb()
        return self._caller.call(function, args, returns=returns, max_instructions=max_instructions,
                                 timeout=timeout)

    def add_breakpoint(self, where: str | int) -> int:
        """Stop the run (StopReason.BREAKPOINT) when execution reaches where."""
        address = where if isinstance(where, int) else self.symbols.address_of(where)
        if address is None:
            raise KeyError(f"no symbol {where!r} in the kernel")
        if address not in self._breakpoints:
            self._breakpoints[address] = self.uc.hook_add(
                UC_HOOK_CODE, self._on_breakpoint, begin=address, end=address)
            self.uc.ctl_remove_cache(address, address + 1)
        return address

    def remove_breakpoint(self, address: int) -> None:
        handle = self._breakpoints.pop(address, None)
        if handle is not None:
            self.uc.hook_del(handle)
            self.uc.ctl_remove_cache(address, address + 1)

    def _on_breakpoint(self, uc, address: int, size: int, _user) -> None:
        self._stop_now(Stop(StopReason.BREAKPOINT, f"breakpoint at {self.describe(address)}"))

    def snapshot(self):
        """Everything needed to come back here: CPU, RAM (copy-on-write), devices, clock."""
        from unikernel_sim.snapshot import take_snapshot

        self.clock.pause()
        return take_snapshot(self)

    def restore(self, snapshot, *, flush: bool = False) -> None:
        """Back to snapshot. flush=True also empties the translation cache, needed only
        if the guest ran code it generated outside its image (see cpu/code_cache.py)."""
        from unikernel_sim.snapshot import restore_snapshot

        restore_snapshot(self, snapshot, flush=flush)

    # --- hooks -----------------------------------------------------------------
    def _install_hooks(self) -> None:
        uc = self.uc
        uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, x86.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, x86.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_instruction)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        cpuid.install(uc, deterministic=self.clock.deterministic)
        self.fast_syscall = FastSystemCall(self)

    def _on_in(self, uc, port: int, size: int, _user) -> int:
        self._io_cycle()
        return self.bus.read(port, size)

    def _on_out(self, uc, port: int, size: int, value: int, _user) -> None:
        self._io_cycle()
        self.bus.write(port, size, value)

    def _io_cycle(self) -> None:
        """Deterministic mode: a port access takes IO_ACCESS_NS of virtual time, as
        an ISA bus cycle does (~1 us); polling loops then take as many accesses as
        on hardware instead of millions. Fast mode pays the host's own time."""
        if self.clock.deterministic:
            self.clock.skip_ns(IO_ACCESS_NS)
            self._reschedule()

    def _on_debug_exit(self, value: int) -> None:
        self._stop_now(Stop(StopReason.GUEST_EXIT, f"guest exit with value {value}", exit_value=value))

    def _on_power_off(self, value: int) -> None:
        self._stop_now(Stop(StopReason.POWER_OFF, f"guest powered off (ACPI PM1a control {value:#06x})"))

    def _on_reset_request(self, source: str) -> None:
        self._stop_now(Stop(StopReason.RESET, f"guest requested a system reset ({source})"))

    def _on_unknown_port(self, kind: str, port: int, size: int, value: int) -> None:
        if self.strict_io:
            access = f"read of port {port:#x}" if kind == "in" else f"write of {value:#x} to port {port:#x}"
            self._stop_now(Stop(StopReason.STRICT_IO, f"--strict-io: {access}, which has no device"))

    def _on_interrupt(self, uc, vector: int, _user) -> None:
        """A CPU exception or INT n: deliver it through the guest IDT."""
        info = take_exception_info(uc)
        kind = KIND_SOFTWARE if info.software else KIND_EXCEPTION
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        cr2 = uc.reg_read(x86.UC_X86_REG_CR2) if vector == Vector.PF and kind == KIND_EXCEPTION else None
        restart = self._software_interrupt_start(rip, vector) if kind == KIND_SOFTWARE else None
        self._deliver(Event(vector, kind, error_code_for(vector, kind, info.error_code), rip, cr2, restart))

    def _software_interrupt_start(self, rip: int, vector: int) -> int:
        """Address of the INT n / INT3 / INTO / INT1 that RIP has just passed."""
        before = self.read_virtual(rip - 2, 2) or b"\0\0"
        if before[0] == OPCODE_INT_IMM8 and before[1] == vector:
            return rip - 2
        return rip - 1

    def _on_invalid_instruction(self, uc, _user) -> bool:
        # #UD never reaches UC_HOOK_INTR (docs/unicorn-quirks.md, Q4); it arrives here instead - and so
        # does a software `int 6`, with RIP still at the INT instruction.
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        if self.read_virtual(rip, 2) == bytes([OPCODE_INT_IMM8, Vector.UD]):
            self._deliver(Event(Vector.UD, KIND_SOFTWARE, None, rip + 2, restart_rip=rip))
        else:
            self._deliver(Event(Vector.UD, KIND_EXCEPTION, None, rip))
        return True

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

    def _request_service(self) -> None:
        """Leave emu_start so the loop can deliver an interrupt, then carry on."""
        self._service_requested = True
        self.clock.note_stop_request()
        self.uc.emu_stop()

    # --- interrupts -----------------------------------------------------------------
    def _deliver(self, event: Event) -> DeliveryOutcome:
        if event.kind != KIND_EXTERNAL:
            self.last_exception = (event.vector, event.error_code, event.return_rip, event.cr2)
            # The registers where it happened: a report written after the guest's own
            # handler panicked still unwinds from the fault, not from the panic.
            registers = {**read_cpu_state(self.uc).gpr, "rip": event.return_rip}
            # The word just below RSP, before this delivery's frame covers it (a `ret`
            # that jumped into nowhere left its target there).
            below = self.read_virtual(registers["rsp"] - 8, 8)
            registers["word_below_rsp"] = int.from_bytes(below, "little") if below else None
            registers["last_return"] = self.clock.last_return()
            self.last_exception_registers = registers
        outcome = self.delivery.deliver(event)
        if self.trace_interrupts:
            for step in outcome.steps:
                self.interrupt_log.append((self.clock.now_ns(), step.event.label(), step.event.return_rip,
                                           self.instructions))
        if outcome.triple_fault:
            self._stop_now(self._triple_fault_stop(outcome))
        return outcome

    def _triple_fault_stop(self, outcome: DeliveryOutcome) -> Stop:
        chain = [FaultStep(s.event.vector, s.event.error_code, s.event.return_rip,
                           self.describe(s.event.return_rip), s.event.cr2) for s in outcome.steps]
        last = outcome.steps[-1].event
        where = f" at {last.cr2:#x}" if last.cr2 is not None else ""
        summary = (f"triple fault: {short_name(last.vector)}{where} while delivering #DF; chain: "
                   + " -> ".join(s.event.label() for s in outcome.steps))
        rip = outcome.steps[0].event.return_rip
        return Stop(StopReason.TRIPLE_FAULT, summary, rip=rip, where=self.describe(rip),
                    vector=last.vector, fault_address=last.cr2, chain=chain)

    def _on_interrupt_line_change(self) -> None:
        if self.pic.interrupt_pending:
            self._request_service()
        self._reschedule()

    def _advance_devices(self) -> None:
        now = self.clock.now_ns()
        self.pit.advance(now)
        self.keyboard.advance(now)
        if self.red_zone is not None:
            self.red_zone.expire(now)

    def _inject_pending_interrupt(self) -> bool:
        """Deliver the PIC's request if the CPU accepts interrupts now (IF set, and
        not in the one-instruction shadow of STI / MOV SS: the request then waits
        for the next slice, at most PENDING_POLL_NS away, or for the `hlt` stop)."""
        if not self.pic.interrupt_pending:
            return False
        if not self.uc.reg_read(x86.UC_X86_REG_RFLAGS) & RFLAGS_IF:
            return False
        if interrupt_shadow(self.uc):
            return False
        vector, irq = self.pic.acknowledge()
        self.irq_count += 1
        old_rsp = self.uc.reg_read(x86.UC_X86_REG_RSP)
        return_rip = self.rip
        outcome = self._deliver(Event(vector, KIND_EXTERNAL, None, return_rip))
        new_rsp = self.uc.reg_read(x86.UC_X86_REG_RSP)
        if (self.red_zone is not None and not outcome.triple_fault and self.cpu_long_mode()
                and 0 < old_rsp - new_rsp <= RED_ZONE_FRAME_REACH):
            self.red_zone.interrupt_delivered(old_rsp, new_rsp, return_rip, self.clock.now_ns())
        return True

    def cpu_long_mode(self) -> bool:
        return bool(self.uc.msr_read(MSR.EFER) & EFER_LMA)

    def _next_event_ns(self) -> int | None:
        """When the guest must next be stopped for a device, or None."""
        events = []
        if not self.pic.master.imr & (1 << IRQ_TIMER):
            events.append(self.pit.next_event_ns())
        events.append(self.keyboard.next_event_ns())
        if self.pic.interrupt_pending:
            events.append(self.clock.now_ns() + PENDING_POLL_NS)
        if self.red_zone is not None:
            events.append(self.red_zone.expires_ns)
        events = [e for e in events if e is not None]
        return min(events) if events else None

    def _reschedule(self) -> None:
        """Re-arm the next stop after device state changed (may run inside a hook)."""
        self._arm(self._next_event_ns(), self._budget_end)

    def _arm(self, event_ns: int | None, budget_end: int | None) -> None:
        if self.clock.deterministic:
            limits = [x for x in (budget_end, None if event_ns is None else self.clock.instruction_at(event_ns))
                      if x is not None]
            self.clock.arm_stop(min(limits) if limits else None, keep_request=True)
        else:
            self.clock.arm_stop(budget_end, keep_request=True)
            self.host_timer.arm(None if event_ns is None else self.clock.host_ns_at(event_ns))

    # --- running ---------------------------------------------------------------
    _budget_end: int | None = None

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
            self._budget_end = self.clock.instructions + max_instructions
        else:
            self._budget_end = None
        self.clock.resume()
        self._timeout = timeout
        if timeout is not None:
            self.host_timer.arm(host_ns() + int(timeout * 1e9), TIMEOUT)
        unexplained = 0
        try:
            with InterruptWatch(self.uc, enabled=catch_sigint, on_stop=self.clock.note_stop_request) as watch:
                while True:
                    stop = self._run_slice(watch)
                    if isinstance(stop, Stop):
                        return self._finish(stop)
                    unexplained = unexplained + 1 if stop is _UNEXPLAINED else 0
                    if unexplained > MAX_UNEXPLAINED_RETURNS:
                        raise RuntimeError(f"Unicorn keeps returning without a reason at {self.describe(self.rip)}")
        finally:
            if self.red_zone is not None:
                self.red_zone.retire()
            self.host_timer.arm(None)
            self.host_timer.arm(None, TIMEOUT)
            self.clock.pause()
            for callback in self.on_stop:
                callback()

    def _run_slice(self, watch: InterruptWatch) -> Stop | object | None:
        """One emu_start. Returns a Stop, None (go on), or _UNEXPLAINED."""
        self._pending = None
        self._advance_devices()
        self._inject_pending_interrupt()
        if self._pending is not None:                 # delivery ended in a triple fault
            return self._pending
        self._unmapped = None
        self._service_requested = False
        self.clock.arm_stop(None)
        self._arm(self._next_event_ns(), self._budget_end)
        clear_exception_in_flight(self.uc)
        error = None
        try:
            self.uc.emu_start(self.rip, RUN_UNTIL_NEVER)
        except UcError as exc:
            error = exc
        if self._pending is not None:
            return self._pending
        if self._caller is not None and self._caller.returned():
            return Stop(StopReason.RETURNED, "guest call returned")   # its hook was skipped
        if error is not None:
            return self._stop_for_error(error)
        if self._pending_fault is not None:              # raised from a hook (raise_fault)
            fault, self._pending_fault = self._pending_fault, None
            self._deliver(fault)
            return self._pending
        if watch.interrupted:
            return self._stop_here(StopReason.INTERRUPTED, "interrupted (Ctrl-C)")
        if self.host_timer.take_fired(TIMEOUT):
            return self._stop_here(StopReason.TIMEOUT, f"wall-clock timeout of {self._timeout:g} s expired")
        budget_end = self._budget_end
        if budget_end is not None and self.clock.instructions >= budget_end:
            return self._stop_here(StopReason.BUDGET, f"instruction budget of {budget_end} reached")
        timer_fired = self.host_timer.take_fired()
        if self._service_requested or self.clock.stopped_by_clock or timer_fired:
            return None
        if self._after_hlt():
            return self._on_hlt()
        return _UNEXPLAINED

    def _on_hlt(self) -> Stop | None:
        """hlt: sleep until the next interrupt (virtual time jumps), or end the run."""
        if not self.uc.reg_read(x86.UC_X86_REG_RFLAGS) & RFLAGS_IF:
            return self._stop_here(StopReason.HALT, "halted (hlt with interrupts disabled)")
        if self.pic.interrupt_pending:
            return None
        wake = self._next_event_ns()
        if wake is None:
            return self._stop_here(StopReason.HALT,
                                   "halted (hlt with interrupts enabled, but no unmasked interrupt source)")
        self.clock.skip_ns(wake - self.clock.now_ns())
        return None

    def _after_hlt(self) -> bool:
        rip = self.rip
        data = self.read_virtual(rip - 1, 1) if rip else None
        return data is not None and data[0] == OPCODE_HLT

    def _stop_for_error(self, error: UcError) -> Stop:
        rip = self.rip
        where = self.describe(rip)
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
            uc.reg_read(x86.UC_X86_REG_CR4), uc.msr_read(MSR.EFER),
            lambda address: self.ram.u64(address) if self.ram.contains(address, 8) else None,
        )

    def _physical_chunks(self, virtual: int, length: int) -> list[tuple[int, int]] | None:
        chunks = []
        done = 0
        while done < length:
            walk = self.translate(virtual + done)
            if walk.physical is None:
                return None
            chunk = min(length - done, walk.page_size - (walk.physical % walk.page_size))
            if not self.ram.contains(walk.physical, chunk):
                return None
            chunks.append((walk.physical, chunk))
            done += chunk
        return chunks

    def read_virtual(self, virtual: int, length: int) -> bytes | None:
        """Bytes at a guest virtual address, or None where unmapped or outside RAM."""
        chunks = self._physical_chunks(virtual, length)
        if chunks is None:
            return None
        return b"".join(self.ram.read(address, size) for address, size in chunks)

    def write_virtual(self, virtual: int, data: bytes) -> bool:
        """Write through the guest's page tables; False (nothing written) where unmapped."""
        chunks = self._physical_chunks(virtual, len(data))
        if chunks is None:
            return False
        offset = 0
        for address, size in chunks:
            self.ram.write(address, data[offset:offset + size])
            offset += size
        return True

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


_UNEXPLAINED = object()


class _Synced:
    """A port device whose reads first bring the timed devices up to date
    (so a PIC IRR read sees the PIT ticks that are due)."""

    def __init__(self, device, sync: Callable[[], None]) -> None:
        self.device = device
        self.sync = sync
        self.io_width = device.io_width

    def io_read(self, port: int, size: int) -> int:
        self.sync()
        return self.device.io_read(port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        self.device.io_write(port, size, value)

