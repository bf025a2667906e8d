"""The Python debugging API: continuing from a breakpoint executes the instruction
under it (it is hit again only when execution comes back), breakpoints are removed
by the name they were set by, and step() executes exactly one instruction (checked
against capstone's lengths of the instructions stepped over)."""
from __future__ import annotations

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs

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


def test_range_stepping_runs_the_loop_and_stops_at_the_first_instruction_after_it(make_guest):
    """step_range(start, end): the loop body [inc, after jnz) runs all its iterations in
    one request; the stop is at `mov al, 0`, not executed (capstone gives the lengths)."""
    machine = loaded(make_guest)
    decoder = Cs(CS_ARCH_X86, CS_MODE_32)
    start = guestkit.code_address() + MOV_ECX_LENGTH
    code = bytes(machine.uc.mem_read(start, 16))
    body = list(decoder.disasm(code, start))[:3]                  # inc, dec, jnz
    end = body[-1].address + body[-1].size
    machine.step()                                                 # mov ecx, 3
    rbx = machine.cpu_state().gpr["rbx"]                           # the Multiboot information address
    stop = machine.step_range(start, end)
    assert stop.reason is StopReason.STEP and machine.rip == end
    assert machine.cpu_state().gpr["rbx"] - rbx == 3 and machine.cpu_state().gpr["rcx"] & 0xFFFFFFFF == 0
    assert machine.run(timeout=5).reason is StopReason.GUEST_EXIT   # the hooks are gone: runs to the end


def test_range_stepping_stops_at_a_breakpoint_inside_the_range(make_guest):
    machine = loaded(make_guest)
    start = guestkit.code_address()
    dec = start + MOV_ECX_LENGTH + 1                               # inc ebx is 1 byte
    machine.add_breakpoint(dec)
    stop = machine.step_range(start, start + 0x100)
    assert stop.reason is StopReason.BREAKPOINT and machine.rip == dec

PIT_IRQ = 0


def tick_wait_hlt(machine: Machine) -> int:
    """The hlt of the firmware's tick wait (report_timer, inlined into kernel_main): the
    one followed by a call of pit_ticks (capstone over the ELF's bytes)."""
    start, pit_ticks = machine.symbols.resolve("kernel_main"), machine.symbols.resolve("pit_ticks")
    code = list(Cs(CS_ARCH_X86, CS_MODE_64).disasm(bytes(machine.uc.mem_read(start, 4096)), start))
    return next(this.address for this, after in zip(code, code[1:])
                if this.mnemonic == "hlt" and after.mnemonic == "call" and after.op_str == hex(pit_ticks))


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_step_of_hlt_waits_for_the_interrupt_and_runs_its_handler(firmware_elf, deterministic):
    """The firmware's report_timer waits for PIT ticks with hlt (interrupts on). A step of
    that hlt lasts until the CPU wakes: exactly one interrupt is taken and its handler runs
    whole (a PIT interrupt counts exactly one tick), and the step ends on the instruction
    after the one-byte hlt, as the trap flag would have it; the old step ended there at
    once, with no tick, and stepping the wait loop never advanced. The waking interrupt may
    be the keyboard controller's (its reply to the firmware's set-up): in fast mode by host
    time, in deterministic mode always the same one."""
    woken = [run_hlt_step(firmware_elf, deterministic) for _ in range(2 if deterministic else 1)]
    if deterministic:
        assert woken[0] == woken[1]


def run_hlt_step(firmware_elf: str, deterministic: bool) -> int:
    """Steps the tick wait's hlt; returns the IRQ that woke it."""
    machine = Machine(deterministic=deterministic)
    machine.load(firmware_elf)
    hlt = tick_wait_hlt(machine)
    machine.add_breakpoint(hlt)
    assert machine.run(timeout=30).reason is StopReason.BREAKPOINT and machine.rip == hlt
    ticks = machine.symbols.resolve("ticks")
    before, interrupts = int.from_bytes(machine.uc.mem_read(ticks, 8), "little"), machine.interrupts.irq_count
    acknowledged = []
    acknowledge = machine.board.acknowledge

    def recording_acknowledge():
        vector, irq = acknowledge()
        acknowledged.append(irq)
        return vector, irq

    machine.board.acknowledge = recording_acknowledge
    stop = machine.step()
    assert stop.reason is StopReason.STEP and machine.rip == hlt + 1
    assert machine.interrupts.irq_count == interrupts + 1 and len(acknowledged) == 1   # one woke it, and ran
    counted = int.from_bytes(machine.uc.mem_read(ticks, 8), "little") - before
    assert counted == (1 if acknowledged[0] == PIT_IRQ else 0), acknowledged
    return acknowledged[0]
