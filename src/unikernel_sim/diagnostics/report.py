"""The crash report: what happened (one line first), why (the checkers' hints),
where (registers, disassembly with source lines, backtrace, page walks, stack)
and what the guest said last. Rendered as text for people, as JSON (schema in
docs/crash-report.md) for tools, and as the message of a failed guest call."""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from unikernel_sim.arch import CR0, CR4, EFER, GPR_NAMES, Vector, flag_names, short_name, vector_name
from unikernel_sim.cpu.engine import CpuState
from unikernel_sim.diagnostics import decode
from unikernel_sim.diagnostics.checkers import Hint, all_checkers

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine
    from unikernel_sim.stops import Stop

SCHEMA = "unisim-crash-report/1"
STACK_WORDS_BELOW = 4
STACK_WORDS_ABOVE = 16
SERIAL_LINES = 20


class Evidence:
    """Read-only views of the machine that checkers share."""

    def __init__(self, machine: "Machine", stop: "Stop") -> None:
        self.machine = machine
        self.stop = stop
        self.state: CpuState = machine.cpu_state()
        # Where the fault happened, when the guest's own handler ran (and moved on) since.
        at_fault = machine.last_exception_registers if machine.last_exception is not None else None
        self.registers = dict(at_fault) if at_fault else {**self.state.gpr, "rip": self.state.rip}

    @property
    def first_exception(self) -> tuple[int, int | None, int, int | None] | None:
        if self.stop.chain:
            step = self.stop.chain[0]
            return step.vector, step.error_code, step.rip, step.cr2
        return self.machine.last_exception

    @property
    def page_fault(self) -> tuple[int, int, int] | None:
        """(address, error code, rip) of the page fault behind this stop, if one."""
        for step in self.stop.chain:
            if step.vector == Vector.PF and step.cr2 is not None:
                return step.cr2, step.error_code or 0, step.rip
        last = self.machine.last_exception
        if last is not None and last[0] == Vector.PF and last[3] is not None:
            return last[3], last[1] or 0, last[2]
        return None

    @property
    def fault_rip(self) -> int | None:
        exception = self.first_exception
        return exception[2] if exception is not None else None

    def where(self, address: int | None) -> str:
        if address is None:
            return "?"
        text = self.machine.describe(address)
        debug = self.machine.debug_info()
        line = debug.source_line(address) if debug else None
        return f"{text} [{line}]" if line else text

    def function_at(self, address: int | None) -> str | None:
        if address is None or self.machine.symbols is None:
            return None
        found = self.machine.symbols.lookup(address)
        return found[0].name if found else None

    def u64(self, address: int) -> int | None:
        data = self.machine.read_virtual(address, 8)
        return None if data is None else struct.unpack("<Q", data)[0]

    def symbol_u64(self, name: str) -> int | None:
        address = self.machine.symbols.address_of(name) if self.machine.symbols else None
        return None if address is None else self.u64(address)

    def is_code(self, address: int) -> bool:
        kernel = self.machine.kernel
        if kernel is None or kernel.elf is None:
            return True
        return any(s.executable and s.vaddr <= address < s.vaddr + s.memsz for s in kernel.elf.segments)

    def _decode(self, address: int):
        from unikernel_sim.diagnostics.disassembly import disassembler

        code = self.machine.read_virtual(address, 15)
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
        from unikernel_sim.diagnostics.alignment import effective_address, requires_alignment

        instruction = self._decode(address)
        if instruction is None:
            return None
        index = requires_alignment(instruction)
        if index is None:
            return None
        return effective_address(self.machine, instruction, instruction.operands[index])


@dataclass
class CrashReport:
    schema: str
    headline: str
    summary: str
    reason: str
    hints: list[dict[str, Any]]
    chain: list[dict[str, Any]]
    registers: dict[str, Any]
    disassembly: list[dict[str, Any]]
    backtrace: list[dict[str, Any]]
    page_walks: list[dict[str, Any]]
    stack: list[dict[str, Any]]
    serial_tail: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def text(self) -> str:
        return render_text(self)


def _safe(function, default):
    """A report section that fails must not hide the others (the guest state can be anything)."""
    try:
        return function()
    except Exception as error:  # noqa: BLE001 - report what broke, keep going
        return default(error)


def build_report(machine: "Machine", stop: "Stop") -> CrashReport:
    evidence = Evidence(machine, stop)
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
        hints=[asdict(h) for h in hints],
        chain=_chain(evidence),
        registers=_registers(evidence.state),
        disassembly=_safe(lambda: _disassembly(machine, evidence), lambda e: []),
        backtrace=_safe(lambda: _backtrace(machine, evidence), lambda e: []),
        page_walks=_safe(lambda: _page_walks(machine, evidence), lambda e: []),
        stack=_safe(lambda: _stack(machine, evidence), lambda e: []),
        serial_tail=machine.serial.last_lines(SERIAL_LINES),
    )


def _chain(evidence: Evidence) -> list[dict[str, Any]]:
    steps = evidence.stop.chain
    if not steps and evidence.machine.last_exception is not None:
        vector, error, rip, cr2 = evidence.machine.last_exception
        steps = [type("Step", (), {"vector": vector, "error_code": error, "rip": rip, "cr2": cr2})()]
    return [{"vector": s.vector, "name": vector_name(s.vector), "error_code": s.error_code,
             "error_decoded": decode.error_code(s.vector, s.error_code), "rip": s.rip,
             "where": evidence.where(s.rip), "cr2": s.cr2} for s in steps]


def _registers(state: CpuState) -> dict[str, Any]:
    return {
        "gpr": dict(state.gpr), "rip": state.rip,
        "rflags": state.rflags, "rflags_decoded": decode.rflags(state.rflags),
        "cr0": state.cr0, "cr0_decoded": flag_names(state.cr0, CR0),
        "cr2": state.cr2, "cr3": state.cr3,
        "cr4": state.cr4, "cr4_decoded": flag_names(state.cr4, CR4),
        "efer": state.efer, "efer_decoded": flag_names(state.efer, EFER),
        "segments": dict(state.segments),
        "gdtr": {"base": state.gdtr[0], "limit": state.gdtr[1]},
        "idtr": {"base": state.idtr[0], "limit": state.idtr[1]},
    }


def _disassembly(machine: "Machine", evidence: Evidence) -> list[dict[str, Any]]:
    from unikernel_sim.diagnostics.disassembly import around

    center = evidence.fault_rip if evidence.fault_rip is not None else evidence.state.rip
    return [{"address": i.address, "text": i.text, "where": i.where, "source": i.source, "bytes": i.bytes_hex,
             "current": i.address == center}
            for i in around(machine, center, long_mode=evidence.state.long_mode)]


def _backtrace(machine: "Machine", evidence: Evidence) -> list[dict[str, Any]]:
    """From the exception when there was one (the guest's handler may have moved on since)."""
    from unikernel_sim.diagnostics.unwind import backtrace

    registers = machine.last_exception_registers if machine.last_exception is not None else None
    if evidence.stop.chain:
        registers = None if evidence.stop.chain[0].rip == evidence.state.rip else registers
    return [asdict(frame) for frame in backtrace(machine, registers)]


def _page_walks(machine: "Machine", evidence: Evidence) -> list[dict[str, Any]]:
    walks = []
    fault = evidence.page_fault
    targets = [("fault address", fault[0])] if fault else []
    if evidence.stop.fault_address is not None and not fault:
        targets.append(("fault address", evidence.stop.fault_address))
    targets.append(("rip", evidence.fault_rip if evidence.fault_rip is not None else evidence.state.rip))
    for purpose, address in targets:
        walk = machine.translate(address)
        walks.append({"purpose": purpose, "address": address, "mode": walk.mode, "physical": walk.physical,
                      "fault_level": walk.fault_level, "error": walk.error,
                      "steps": [asdict(step) for step in walk.steps]})
    return walks


def _stack(machine: "Machine", evidence: Evidence) -> list[dict[str, Any]]:
    rsp = evidence.state.gpr["rsp"]
    rows = []
    for index in range(-STACK_WORDS_BELOW, STACK_WORDS_ABOVE):
        address = rsp + 8 * index
        value = evidence.u64(address)
        if value is None:
            continue
        named = machine.describe(value)
        symbol = named if evidence.is_code(value) and not named.startswith("0x") else None
        rows.append({"address": address, "value": value, "symbol": symbol, "rsp": index == 0})
    return rows


def render_text(report: CrashReport) -> str:
    lines = [report.headline]
    if report.headline != report.summary:
        lines.append(f"  ({report.summary})")
    for hint in report.hints[1:]:
        lines.append(f"  also: {hint['message']}")
    if report.chain:
        lines.append("exceptions:")
        for step in report.chain:
            decoded = f" ({step['error_decoded']})" if step["error_decoded"] else ""
            code = f" error={step['error_code']:#x}{decoded}" if step["error_code"] is not None else ""
            cr2 = f" cr2={step['cr2']:#x}" if step["cr2"] is not None else ""
            lines.append(f"  {short_name(step['vector'])}{code}{cr2} at {step['where']}")
    regs = report.registers
    lines.append("registers:")
    for i in range(0, len(GPR_NAMES), 4):
        lines.append("  " + "  ".join(f"{n:>3}={regs['gpr'][n]:#018x}" for n in GPR_NAMES[i:i + 4]))
    lines.append(f"  rip={regs['rip']:#018x}  rflags={regs['rflags']:#x} [{' '.join(regs['rflags_decoded'])}]")
    lines.append(f"  cr0={regs['cr0']:#x} [{' '.join(regs['cr0_decoded'])}]  cr2={regs['cr2']:#x}  "
                 f"cr3={regs['cr3']:#x}  cr4={regs['cr4']:#x} [{' '.join(regs['cr4_decoded'])}]  "
                 f"efer={regs['efer']:#x} [{' '.join(regs['efer_decoded'])}]")
    segments = "  ".join(f"{k}={v:#x}" for k, v in regs["segments"].items())
    lines.append(f"  {segments}  gdtr={regs['gdtr']['base']:#x}/{regs['gdtr']['limit']:#x}  "
                 f"idtr={regs['idtr']['base']:#x}/{regs['idtr']['limit']:#x}")
    if report.disassembly:
        lines.append("code:")
        for insn in report.disassembly:
            marker = "=>" if insn["current"] else "  "
            source = f"  ; {insn['source']}" if insn["source"] else ""
            lines.append(f"  {marker} {insn['address']:#x} {insn['text']:<40} {insn['where']}{source}")
    if report.backtrace:
        lines.append("backtrace:")
        for number, frame in enumerate(report.backtrace):
            source = f" at {frame['source']}" if frame["source"] else ""
            lines.append(f"  #{number} {frame['pc']:#x} {frame['where']}{source}")
    for walk in report.page_walks:
        target = f"{walk['physical']:#x}" if walk["physical"] is not None else "not mapped"
        lines.append(f"page walk ({walk['purpose']}) {walk['address']:#x} [{walk['mode']}] -> {target}")
        for step in walk["steps"]:
            flags = "".join(flag for flag, on in (("P", step["present"]), ("W", step["writable"]),
                                                  ("U", step["user"]), ("NX", step["no_execute"]),
                                                  ("PS", step["large"])) if on)
            lines.append(f"  {step['level']:<5} table {step['table']:#x}[{step['index']}] = "
                         f"{step['entry']:#018x} {flags or 'not present'}")
        if walk["error"]:
            lines.append(f"  {walk['error']}")
        elif walk["fault_level"]:
            lines.append(f"  missing at {walk['fault_level']}")
    if report.stack:
        lines.append("stack:")
        for row in report.stack:
            marker = "rsp->" if row["rsp"] else "     "
            symbol = f"  {row['symbol']}" if row["symbol"] else ""
            lines.append(f"  {marker} {row['address']:#x}: {row['value']:#018x}{symbol}")
    if report.serial_tail:
        lines.append("last serial output:")
        lines.extend(f"  | {line}" for line in report.serial_tail)
    return "\n".join(lines)
