"""Backtraces: DWARF call-frame information where the kernel has it (no frame
pointer needed), the RBP chain otherwise, each frame with symbol+offset and
source line."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unikernel_sim.diagnostics.debug_info import debug_info_of

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

MAX_FRAMES = 32            # distinct frames shown
MAX_UNWIND_STEPS = 4096    # frames walked: deep recursion is folded, not cut at 32


@dataclass
class Frame:
    pc: int
    where: str
    source: str | None
    method: str            # "cfi", "frame-pointer", "start"
    repeat: int = 1        # identical consecutive frames folded into this one (recursion)


def _u64(machine: "Machine", address: int) -> int | None:
    data = machine.read_virtual(address, 8)
    return None if data is None else struct.unpack("<Q", data)[0]


def backtrace(machine: "Machine", registers: dict[str, int] | None = None) -> list[Frame]:
    state = machine.cpu_state()
    regs = dict(registers or {**state.gpr, "rip": state.rip})
    debug = debug_info_of(machine)
    frames: list[Frame] = []
    method = "start"
    for step in range(MAX_UNWIND_STEPS):
        pc = regs["rip"]
        if len(frames) > 1 and frames[-1].pc == pc:
            frames[-1].repeat += 1                       # the same return address again: recursion
        elif len(frames) == MAX_FRAMES:
            break
        else:
            lookup = pc if not frames else pc - 1      # a return address may lie past a noreturn call
            source = debug.source_line(lookup) if debug else None
            frames.append(Frame(pc, _describe_return(machine, pc, lookup), str(source) if source else None,
                                method))
        rule = debug.frame_rule(pc if step == 0 else pc - 1) if debug else None
        caller = _unwind_cfi(machine, regs, rule) if rule else None
        if caller is not None:
            method = "cfi"
        else:
            caller = _unwind_frame_pointer(machine, regs)
            method = "frame-pointer"
        if caller is None or caller["rip"] == 0 or not _is_code(machine, caller["rip"]):
            break
        if caller["rsp"] <= regs["rsp"] and method == "frame-pointer":
            break
        regs = caller
    return frames


def _describe_return(machine: "Machine", pc: int, lookup: int) -> str:
    found = machine.symbols.lookup(lookup) if machine.symbols is not None else None
    if found is None:
        return f"{pc:#x}"
    symbol = found[0]
    return f"{symbol.name}+{pc - symbol.address:#x} ({pc:#x})"


def _is_code(machine: "Machine", address: int) -> bool:
    kernel = machine.kernel
    if kernel is None or kernel.elf is None:
        return machine.read_virtual(address, 1) is not None
    return any(seg.executable and seg.vaddr <= address < seg.vaddr + seg.memsz for seg in kernel.elf.segments)


def _unwind_cfi(machine: "Machine", regs: dict[str, int], rule) -> dict[str, int] | None:
    if rule.cfa_register not in regs:
        return None
    cfa = regs[rule.cfa_register] + rule.cfa_offset
    caller = dict(regs)
    for register, offset in rule.saved:
        value = _u64(machine, cfa + offset)
        if value is None:
            return None
        caller[register] = value
    return_address = _u64(machine, cfa - 8)
    if return_address is None:
        return None
    caller["rip"] = return_address
    caller["rsp"] = cfa
    return caller


def _unwind_frame_pointer(machine: "Machine", regs: dict[str, int]) -> dict[str, int] | None:
    rbp = regs.get("rbp", 0)
    if rbp == 0:
        return None
    saved_rbp, return_address = _u64(machine, rbp), _u64(machine, rbp + 8)
    if saved_rbp is None or return_address is None:
        return None
    caller = dict(regs)
    caller.update(rbp=saved_rbp, rip=return_address, rsp=rbp + 16)
    return caller
