"""Reverse execution (debug/history.py) on a deterministic machine. The oracle for
"back N instructions" is a second machine that never went back: booted the same way
and run straight to the same instruction count, it must have the same registers and
the same memory. Watch hits are checked against capstone's decoding of the guest's
own code (the instruction that writes the watched counter)."""
from __future__ import annotations

import pytest
from capstone import CS_ARCH_X86, CS_MODE_32, Cs

import guestkit
from unikernel_sim.debug.history import History
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

COUNTER = 0x200000
ITERATIONS = 3000
LOOP = f"""
    mov ecx, {ITERATIONS}
again:
    inc dword ptr [{COUNTER:#x}]
    add ebx, ecx
    dec ecx
    jnz again
    mov al, 0
    out 0xf4, al
    hlt
"""
INTERVAL = 1000                     # small, so that a replay crosses several checkpoints


def booted(make_guest, image: str | None = None) -> Machine:
    machine = Machine(16, deterministic=True)
    machine.load(image or make_guest(LOOP))
    machine.clock.start_counting()
    return machine


def state(machine: Machine) -> tuple:
    cpu = machine.cpu_state()
    return cpu.gpr, cpu.rip, bytes(machine.uc.mem_read(COUNTER, 4))


def straight_to(image: str, instructions: int, make_guest) -> Machine:
    """A machine that never went back, run to the same instruction count (the loader's
    hand-over code already counts a few)."""
    machine = booted(make_guest, image)
    stop = machine.run(max_instructions=instructions - machine.clock.instructions)
    assert machine.clock.instructions == instructions
    assert stop.reason in (StopReason.BUDGET, StopReason.GUEST_EXIT)      # the exit, asked for before the budget
    return machine


def test_stepping_back_lands_where_a_straight_run_to_that_count_is(make_guest):
    image = make_guest(LOOP)
    machine = booted(make_guest, image)
    history = History(machine, interval=INTERVAL)
    start = machine.clock.instructions
    machine.run(max_instructions=7_777 - start)             # forward without the history...
    history.forward(step=True)                              # ...and one recorded step
    assert machine.clock.instructions == 7_778
    for expected in (7_777, 7_776, 4_321, 999, start + 1):
        while machine.clock.instructions > expected:
            assert history.reverse_step().reason is StopReason.STEP
        assert state(machine) == state(straight_to(image, expected, make_guest)), expected
    assert history.reverse_step().reason is StopReason.STEP and machine.clock.instructions == start
    assert history.reverse_step() is None                  # the beginning of the history


def test_reverse_continue_stops_before_the_last_write_to_a_watched_counter(make_guest):
    machine = booted(make_guest)
    history = History(machine, interval=INTERVAL)
    assert history.forward().reason is StopReason.GUEST_EXIT
    assert int.from_bytes(machine.uc.mem_read(COUNTER, 4), "little") == ITERATIONS
    machine.watchpoints.add(COUNTER, 4, "write")
    for value_before in (ITERATIONS - 1, ITERATIONS - 2):
        stop = history.reverse_continue()
        assert stop.reason is StopReason.WATCHPOINT
        assert int.from_bytes(machine.uc.mem_read(COUNTER, 4), "little") == value_before
        instruction = next(Cs(CS_ARCH_X86, CS_MODE_32).disasm(bytes(machine.uc.mem_read(machine.rip, 16)),
                                                              machine.rip))
        assert (instruction.mnemonic, instruction.op_str) == ("inc", f"dword ptr [{COUNTER:#x}]")
    assert history.forward(step=True).reason is StopReason.WATCHPOINT     # the write, done again
    assert int.from_bytes(machine.uc.mem_read(COUNTER, 4), "little") == ITERATIONS - 1


def test_reverse_continue_to_a_breakpoint_and_with_nothing_to_find(make_guest):
    machine = booted(make_guest)
    history = History(machine, interval=INTERVAL)
    start = machine.clock.instructions
    history.forward()
    machine.watchpoints.add(0x300000, 4, "write")            # never written
    assert history.reverse_continue() is None and machine.clock.instructions == start
    history.forward()
    machine.watchpoints.remove(0x300000, 4, "write")
    exit_instructions = machine.clock.instructions             # the exit lands at its block's end, the hlt
    out = guestkit.code_address() + len(guestkit.assemble(LOOP.split("out 0xf4")[0], guestkit.code_address()))
    machine.add_breakpoint(out)
    stop = history.reverse_continue()
    assert stop.reason is StopReason.BREAKPOINT and machine.rip == out
    assert machine.clock.instructions == exit_instructions - 2


def test_reverse_execution_needs_a_deterministic_machine(make_guest):
    machine = Machine(16)
    machine.load(make_guest(LOOP))
    with pytest.raises(ValueError, match="--deterministic"):
        History(machine)


def test_stepping_back_from_the_guests_exit(make_guest):
    """The exit asked for by `out 0xf4` lands at its block's end (the hlt); one step back
    from there is where a straight run to that count stands."""
    image = make_guest(LOOP)
    machine = booted(make_guest, image)
    history = History(machine, interval=INTERVAL)
    assert history.forward().reason is StopReason.GUEST_EXIT
    end = machine.clock.instructions
    assert history.reverse_step().reason is StopReason.STEP and machine.clock.instructions == end - 1
    assert state(machine) == state(straight_to(image, end - 1, make_guest))
