"""The Python debugging API: continuing from a breakpoint executes the instruction
under it (it is hit again only when execution comes back), breakpoints are removed
by the name they were set by, and step() executes exactly one instruction (checked
against capstone's lengths of the instructions stepped over)."""
from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_32, Cs

import guestkit
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

LOOP = """
    mov ecx, 3
again:
    inc ebx
    dec ecx
    jnz again
    mov al, 0
    out 0xf4, al
"""
MOV_ECX_LENGTH = 5


def loaded(make_guest) -> Machine:
    machine = Machine(16)
    machine.load(make_guest(LOOP))
    return machine


def test_continuing_from_a_breakpoint_runs_its_instruction(make_guest):
    machine = loaded(make_guest)
    inc = guestkit.code_address() + MOV_ECX_LENGTH
    machine.add_breakpoint(inc)
    counts = []
    for _ in range(3):
        stop = machine.run(timeout=5)
        assert stop.reason is StopReason.BREAKPOINT and machine.rip == inc
        counts.append(machine.cpu_state().gpr["rbx"] & 0xFFFFFFFF)
    assert [count - counts[0] for count in counts] == [0, 1, 2]    # once per loop iteration
    machine.remove_breakpoint(inc)
    assert machine.run(timeout=5).reason is StopReason.GUEST_EXIT


def test_a_breakpoint_set_by_name_is_removed_by_name(unisim_machine):
    unisim_machine.add_breakpoint("strlen")
    assert "strlen" in unisim_machine.breakpoints
    unisim_machine.remove_breakpoint("strlen")
    assert "strlen" not in unisim_machine.breakpoints and unisim_machine.breakpoints.addresses == []


def test_step_executes_one_instruction_at_a_time(make_guest):
    machine = loaded(make_guest)
    decoder = Cs(CS_ARCH_X86, CS_MODE_32)
    for _ in range(4):                                             # mov, inc, dec, jnz (taken)
        rip = machine.rip
        instruction = next(decoder.disasm(bytes(machine.uc.mem_read(rip, 16)), rip))
        stop = machine.step()
        assert stop.reason is StopReason.STEP
        if not instruction.mnemonic.startswith("j"):
            assert machine.rip == rip + instruction.size, instruction
    assert machine.rip == guestkit.code_address() + MOV_ECX_LENGTH     # the jnz went back
    assert machine.cpu_state().gpr["rcx"] & 0xFFFFFFFF == 2
