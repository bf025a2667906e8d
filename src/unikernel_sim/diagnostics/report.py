"""The crash report: what happened (one line first), why (the checkers' hints),
where (registers, disassembly with source lines, backtrace, page walks, stack)
and what the guest said last. Rendered as text for people, as JSON (schema in
docs/crash-report.md) for tools, and as the message of a failed guest call."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING

from unikernel_sim.arch import (
    CR0, CR4, EFER, GPR_NAMES, MAX_INSTRUCTION_LENGTH, Vector, flag_names, short_name, vector_name,
)
from unikernel_sim.cpu.engine import CpuState
from unikernel_sim.diagnostics import decode
from unikernel_sim.diagnostics.checkers import Hint, all_checkers
from unikernel_sim.diagnostics.debug_info import debug_info_of
from unikernel_sim.diagnostics.unwind import Frame, backtrace
from unikernel_sim.memory.paging import WalkStep
from unikernel_sim.stops import ExceptionRecord, FaultStep, Stop, StopReason

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

SCHEMA = "unisim-crash-report/1"
STACK_WORDS_BELOW = 4
STACK_WORDS_ABOVE = 16
SERIAL_LINES = 20
MAX_REASON = 200                     # characters of an exception message kept for "unavailable: ..."


class Evidence:
    """Read-only views of the machine that checkers share."""

    def __init__(self, machine: "Machine", stop: Stop) -> None:
        self.machine = machine
        self.stop = stop
        self.state: CpuState = machine.cpu_state()
        self.exception: ExceptionRecord | None = machine.interrupts.last_exception
        # Where the fault happened, when the guest's own handler ran (and moved on) since.
        self.registers = (dict(self.exception.registers) if self.exception is not None
                          else {**self.state.gpr, "rip": self.state.rip})

    @property
    def first_exception(self) -> FaultStep | ExceptionRecord | None:
        """The first exception behind this stop (vector, error_code, rip, cr2)."""
        return self.stop.chain[0] if self.stop.chain else self.exception

    @property
    def page_fault(self) -> tuple[int, int, int] | None:
        """(address, error code, rip) of the page fault behind this stop, if one."""
        candidates = [*self.stop.chain, *([self.exception] if self.exception is not None else [])]
        for step in candidates:
            if step.vector == Vector.PF and step.cr2 is not None:
                return step.cr2, step.error_code or 0, step.rip
        return None

    @property
    def fault_rip(self) -> int | None:
        exception = self.first_exception
        return exception.rip if exception is not None else None

    def where(self, address: int | None) -> str:
        if address is None:
            return "?"
        text = self.machine.describe(address)
        debug = debug_info_of(self.machine)
        line = debug.source_line(address) if debug else None
        return f"{text} [{line}]" if line else text

    def function_at(self, address: int | None) -> str | None:
        if address is None:
            return None
        found = self.machine.symbols.lookup(address)
        return found[0].name if found else None

    def u64(self, address: int) -> int | None:
        data = self.machine.read_virtual(address, 8)
        return None if data is None else struct.unpack("<Q", data)[0]

    def symbol_u64(self, name: str) -> int | None:
        address = self.machine.symbols.address_of(name)
        return None if address is None else self.u64(address)

    def is_code(self, address: int) -> bool:
        kernel = self.machine.kernel
        if kernel is None or kernel.elf is None:
            return True
        return any(s.executable and s.vaddr <= address < s.vaddr + s.memsz for s in kernel.elf.segments)

    def _decode(self, address: int):
        from unikernel_sim.diagnostics.disassembly import disassembler

        code = self.machine.read_virtual(address, MAX_INSTRUCTION_LENGTH)
        if code is None:
            return None
        decoder = disassembler(self.state.long_mode)
        decoder.detail = True
        return next(decoder.disasm(code, address), None)

    def instruction_text(self, address: int) -> str:
        instruction = self._decode(address)
        return f"{instruction.mnemonic} {instruction.op_str}".strip() if instruction else "?"

    def instruction_kind(self, address: int) -> str | None:
        """"SSE" or "x87" for instructions of those extensions, else None."""
        from capstone import x86 as cs_x86

        instruction = self._decode(address)
        if instruction is None:
            return None
        groups = set(instruction.groups)
        sse = {getattr(cs_x86, f"X86_GRP_{name}") for name in ("SSE1", "SSE2", "SSE3", "SSSE3", "SSE41", "SSE42")
               if hasattr(cs_x86, f"X86_GRP_{name}")}
        if groups & sse or any(r.startswith("xmm") for r in instruction.op_str.replace(",", " ").split()):
            return "SSE"
        if cs_x86.X86_GRP_FPU in groups or instruction.mnemonic.startswith("f"):
            return "x87"
        return None

    def aligned_operand(self, address: int) -> int | None:
        from unikernel_sim.cpu.alignment_guard import operand_address, requires_alignment

        instruction = self._decode(address)
        if instruction is None:
            return None
        index = requires_alignment(instruction)
        if index is None:
            return None
        return operand_address(instruction, instruction.operands[index], self.machine.uc.reg_read)


@dataclass
class ChainEntry:
    vector: int
    name: str
    error_code: int | None
    error_decoded: str | None
    rip: int
    where: str
    cr2: int | None
    handled_by_guest: bool = False     # delivered through the guest's IDT (its handler ran)


@dataclass
class FaultRegisters:
    """The general-purpose registers where the latest exception happened, before the
    guest's handler ran: when that handler went on to panic, the final registers
    are the panic function's, not the fault's."""

    vector: int
    name: str
    rip: int
    where: str
    gpr: dict[str, int]


@dataclass
class DescriptorTable:
    base: int
    limit: int


@dataclass
class Registers:
    gpr: dict[str, int]
    rip: int
    rflags: int
    rflags_decoded: list[str]
    cr0: int
    cr0_decoded: list[str]
    cr2: int
    cr3: int
    cr4: int
    cr4_decoded: list[str]
    efer: int
    efer_decoded: list[str]
    segments: dict[str, int]
    gdtr: DescriptorTable
    idtr: DescriptorTable

    @classmethod
    def of(cls, state: CpuState) -> "Registers":
        return cls(
            gpr=dict(state.gpr), rip=state.rip, rflags=state.rflags, rflags_decoded=decode.rflags(state.rflags),
            cr0=state.cr0, cr0_decoded=flag_names(state.cr0, CR0), cr2=state.cr2, cr3=state.cr3,
            cr4=state.cr4, cr4_decoded=flag_names(state.cr4, CR4),
            efer=state.efer, efer_decoded=flag_names(state.efer, EFER), segments=dict(state.segments),
            gdtr=DescriptorTable(*state.gdtr), idtr=DescriptorTable(*state.idtr),
        )


@dataclass
class CodeLine:
    address: int
    text: str
    where: str
    source: str | None
    bytes: str
    current: bool


@dataclass
class PageWalkSection:
    purpose: str
    address: int
    mode: str
    physical: int | None
    fault_level: str | None
    error: str | None
    steps: list[WalkStep]


@dataclass
class StackRow:
    address: int
    value: int
    symbol: str | None
    rsp: bool


@dataclass
class CrashReport:
    """The report's sections; text() renders it for people, to_json() to the schema in
    docs/crash-report.schema.json."""

    schema: str
    headline: str
    summary: str
    reason: str
    hints: list[Hint]
    chain: list[ChainEntry]
    registers: Registers
    disassembly: list[CodeLine]
    backtrace: list[Frame]
    page_walks: list[PageWalkSection]
    stack: list[StackRow]
    serial_tail: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)   # section -> why it could not be built
    fault_registers: FaultRegisters | None = None

    @property
    def hint_messages(self) -> list[str]:
        return [hint.message for hint in self.hints]

    def to_json(self) -> str:
        return json.dumps(_json_ready(self), indent=2)

    def text(self) -> str:
        return render_text(self)


def _safe(function, default):
    """A report section that fails must not hide the others (the guest state can be anything)."""
    try:
        return function()
    except Exception as error:  # noqa: BLE001 - report what broke, keep going
        return default(error)


class _Sections:
    """Builds each section on its own: one that raises (corrupt DWARF, a guest
    state nobody foresaw) is recorded as "unavailable: <why>" and the rest of the
    report is still built."""

    def __init__(self) -> None:
        self.unavailable: dict[str, str] = {}

    def build(self, name: str, function, empty):
        try:
            return function()
        except Exception as error:  # noqa: BLE001 - report what broke, keep going
            self.unavailable[name] = f"{type(error).__name__}: {error}".rstrip(": ")[:MAX_REASON]
            return empty


def build_report(machine: "Machine", stop: Stop | None = None) -> CrashReport:
    """The report for stop, or for the machine as it is now."""
    if stop is None:
        rip = machine.rip
        stop = Stop(StopReason.BREAKPOINT, f"report requested at {machine.describe(rip)}", rip=rip,
                          where=machine.describe(rip))
    evidence = Evidence(machine, stop)
    sections = _Sections()
    hints: list[Hint] = []
    for checker in all_checkers():
        hint = _safe(lambda: checker(evidence), lambda error: None)
        if hint is not None:
            hints.append(hint)
    headline = hints[0].message if hints else stop.summary
    return CrashReport(
        schema=SCHEMA,
        headline=headline,
        summary=stop.summary,
        reason=stop.reason.value,
        hints=hints,
        chain=sections.build("exceptions", lambda: _chain(evidence), []),
        registers=Registers.of(evidence.state),
        disassembly=sections.build("code", lambda: _disassembly(machine, evidence), []),
        backtrace=sections.build("backtrace", lambda: _backtrace(machine, evidence), []),
        page_walks=sections.build("page walk", lambda: _page_walks(machine, evidence), []),
        stack=sections.build("stack", lambda: _stack(machine, evidence), []),
        serial_tail=machine.serial.last_lines(SERIAL_LINES),
        devices=sections.build("devices", machine.board.describe, []),
        unavailable={**sections.unavailable, **_debug_info_errors(machine)},
        fault_registers=sections.build("registers at the fault", lambda: _fault_registers(evidence), None),
    )


def _debug_info_errors(machine: "Machine") -> dict[str, str]:
    from unikernel_sim.diagnostics.debug_info import debug_info_of

    info = _safe(lambda: debug_info_of(machine), lambda error: None)
    return dict(info.errors) if info is not None else {}


def _chain(evidence: Evidence) -> list[ChainEntry]:
    """The escalation that ended the run (a triple fault's chain), or else every
    exception the guest's handlers received, oldest first."""
    if evidence.stop.chain:
        steps, handled = evidence.stop.chain, False
    else:
        received = list(evidence.machine.interrupts.received)
        steps = received or ([evidence.exception] if evidence.exception is not None else [])
        handled = bool(received)
    return [ChainEntry(s.vector, vector_name(s.vector), s.error_code, decode.error_code(s.vector, s.error_code),
                       s.rip, evidence.where(s.rip), s.cr2, handled) for s in steps]


def _fault_registers(evidence: Evidence) -> FaultRegisters | None:
    """Only when the guest's handler has run since (RIP moved away from the fault)."""
    exception = evidence.exception
    if exception is None or evidence.stop.chain or exception.rip == evidence.state.rip:
        return None
    gpr = {name: value for name, value in exception.registers.items() if name != "rip"}
    return FaultRegisters(exception.vector, vector_name(exception.vector), exception.rip,
                          evidence.where(exception.rip), gpr)


def _disassembly(machine: "Machine", evidence: Evidence) -> list[CodeLine]:
    from unikernel_sim.diagnostics.disassembly import around

    center = evidence.fault_rip if evidence.fault_rip is not None else evidence.state.rip
    return [CodeLine(i.address, i.text, i.where, i.source, i.bytes_hex, i.address == center)
            for i in around(machine, center, long_mode=evidence.state.long_mode)]


def _backtrace(machine: "Machine", evidence: Evidence) -> list[Frame]:
    """From the exception when there was one (the guest's handler may have moved on since)."""
    registers = evidence.exception.registers if evidence.exception is not None else None
    if evidence.stop.chain:
        registers = None if evidence.stop.chain[0].rip == evidence.state.rip else registers
    return backtrace(machine, registers)


def _page_walks(machine: "Machine", evidence: Evidence) -> list[PageWalkSection]:
    walks = []
    fault = evidence.page_fault
    targets = [("fault address", fault[0])] if fault else []
    if evidence.stop.fault_address is not None and not fault:
        targets.append(("fault address", evidence.stop.fault_address))
    targets.append(("rip", evidence.fault_rip if evidence.fault_rip is not None else evidence.state.rip))
    for purpose, address in targets:
        walk = machine.translate(address)
        walks.append(PageWalkSection(purpose, address, walk.mode, walk.physical, walk.fault_level, walk.error,
                                     walk.steps))
    return walks


def _stack(machine: "Machine", evidence: Evidence) -> list[StackRow]:
    rsp = evidence.state.gpr["rsp"]
    rows = []
    for index in range(-STACK_WORDS_BELOW, STACK_WORDS_ABOVE):
        address = rsp + 8 * index
        value = evidence.u64(address)
        if value is None:
            continue
        named = machine.describe(value)
        symbol = named if evidence.is_code(value) and not named.startswith("0x") else None
        rows.append(StackRow(address, value, symbol, index == 0))
    return rows


def _json_ready(value: object) -> object:
    """What `asdict` gives, except that a record (records.Record: a page walk's steps) becomes an
    object with its field names, as the schema has it, not an array."""
    if hasattr(value, "_asdict"):
        return {name: _json_ready(item) for name, item in value._asdict().items()}
    if is_dataclass(value):
        return {f.name: _json_ready(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    return value


def render_text(report: CrashReport) -> str:
    """The report for a terminal. Everything the guest controls (panic messages,
    serial output, symbol names from its ELF) is escaped: a byte such as ESC would
    otherwise retitle or recolour the user's terminal."""
    return "\n".join(printable(line) for line in _text_lines(report))


def printable(text: str) -> str:
    """text with control characters (C0, DEL, C1) and lone surrogates written as
    escapes; tabs become spaces; other printable Unicode is kept."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        code = ord(char)
        if char == "\t":
            out.append("    ")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code < 0xE000:
            out.append(f"\\x{code & 0xFF:02x}")      # a byte that was not UTF-8 (surrogateescape)
        elif not char.isprintable() and char != " ":
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _text_lines(report: CrashReport) -> list[str]:
    lines = [report.headline]
    if report.headline != report.summary:
        lines.append(f"  ({report.summary})")
    for hint in report.hints[1:]:
        lines.append(f"  also: {hint.message}")
    if report.chain:
        lines.append("exceptions:")
        for step in report.chain:
            decoded = f" ({step.error_decoded})" if step.error_decoded else ""
            code = f" error={step.error_code:#x}{decoded}" if step.error_code is not None else ""
            cr2 = f" cr2={step.cr2:#x}" if step.cr2 is not None else ""
            handled = "  (handled by the guest)" if step.handled_by_guest else ""
            lines.append(f"  {short_name(step.vector)}{code}{cr2} at {step.where}{handled}")
    fault = report.fault_registers
    if fault is not None:
        lines.append(f"registers at the {short_name(fault.vector)} at {fault.where}, before the guest's handler ran:")
        for i in range(0, len(GPR_NAMES), 4):
            lines.append("  " + "  ".join(f"{n:>3}={fault.gpr.get(n, 0):#018x}" for n in GPR_NAMES[i:i + 4]))
    regs = report.registers
    lines.append("registers (final, where the run stopped):" if fault is not None else "registers:")
    for i in range(0, len(GPR_NAMES), 4):
        lines.append("  " + "  ".join(f"{n:>3}={regs.gpr[n]:#018x}" for n in GPR_NAMES[i:i + 4]))
    lines.append(f"  rip={regs.rip:#018x}  rflags={regs.rflags:#x} [{' '.join(regs.rflags_decoded)}]")
    lines.append(f"  cr0={regs.cr0:#x} [{' '.join(regs.cr0_decoded)}]  cr2={regs.cr2:#x}  "
                 f"cr3={regs.cr3:#x}  cr4={regs.cr4:#x} [{' '.join(regs.cr4_decoded)}]  "
                 f"efer={regs.efer:#x} [{' '.join(regs.efer_decoded)}]")
    segments = "  ".join(f"{k}={v:#x}" for k, v in regs.segments.items())
    lines.append(f"  {segments}  gdtr={regs.gdtr.base:#x}/{regs.gdtr.limit:#x}  "
                 f"idtr={regs.idtr.base:#x}/{regs.idtr.limit:#x}")
    if report.disassembly:
        lines.append("code:")
        for insn in report.disassembly:
            marker = "=>" if insn.current else "  "
            source = f"  ; {insn.source}" if insn.source else ""
            lines.append(f"  {marker} {insn.address:#x} {insn.text:<40} {insn.where}{source}")
    if report.backtrace:
        lines.append("backtrace:")
        for number, frame in enumerate(report.backtrace):
            source = f" at {frame.source}" if frame.source else ""
            folded = f"  (x{frame.repeat}: {frame.repeat - 1} identical frames folded)" if frame.repeat > 1 else ""
            lines.append(f"  #{number} {frame.pc:#x} {frame.where}{source}{folded}")
    for walk in report.page_walks:
        target = f"{walk.physical:#x}" if walk.physical is not None else "not mapped"
        lines.append(f"page walk ({walk.purpose}) {walk.address:#x} [{walk.mode}] -> {target}")
        for step in walk.steps:
            flags = "".join(flag for flag, on in (("P", step.present), ("W", step.writable),
                                                  ("U", step.user), ("NX", step.no_execute),
                                                  ("PS", step.large)) if on)
            lines.append(f"  {step.level:<5} table {step.table:#x}[{step.index}] = "
                         f"{step.entry:#018x} {flags or 'not present'}")
        if walk.error:
            lines.append(f"  {walk.error}")
        elif walk.fault_level:
            lines.append(f"  missing at {walk.fault_level}")
    if report.stack:
        lines.append("stack:")
        for row in report.stack:
            marker = "rsp->" if row.rsp else "     "
            symbol = f"  {row.symbol}" if row.symbol else ""
            lines.append(f"  {marker} {row.address:#x}: {row.value:#018x}{symbol}")
    if report.devices:
        lines.append("devices:")
        lines.extend(f"  {line}" for line in report.devices)
    if report.serial_tail:
        lines.append("last serial output:")
        lines.extend(f"  | {line}" for line in report.serial_tail)
    for section, reason in report.unavailable.items():
        lines.append(f"{section}: unavailable: {reason}")
    return lines
