"""A short register dump for a stop; the full crash report builds on it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from unikernel_sim.cpu.engine import GPR_NAMES

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine
    from unikernel_sim.stops import Stop


def brief_report(machine: "Machine", stop: "Stop") -> str:
    state = machine.cpu_state()
    lines = [f"  rip {state.rip:#018x}  {machine.describe(state.rip)}   rflags {state.rflags:#x}"]
    for i in range(0, len(GPR_NAMES), 4):
        lines.append("  " + "  ".join(f"{n:>3} {state.gpr[n]:#018x}" for n in GPR_NAMES[i:i + 4]))
    lines.append(f"  cr0 {state.cr0:#x}  cr2 {state.cr2:#x}  cr3 {state.cr3:#x}  cr4 {state.cr4:#x}  "
                 f"efer {state.efer:#x}")
    tail = machine.serial.last_lines(5)
    if tail:
        lines.append("  last serial lines:")
        lines.extend(f"    | {line}" for line in tail)
    return "\n".join(lines)
