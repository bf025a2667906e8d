"""Deterministic mode does not depend on how a run is cut into runs: the same guest
run straight to its end, and run in budgets of an odd number of instructions (as a
debugger's checkpoints, breakpoints and steps cut it), takes its timer interrupts at
the same instructions, so every count and every register ends the same. Reverse
execution relies on this: it replays from checkpoints."""
from __future__ import annotations

import pytest

from interrupts.harness import COUNTER_SLOT, IdtGuest, build_protected, compute_loop, program_pit
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

LOG = 0x200000                       # the handler logs the loop counter (ECX) it interrupted
HANDLER = f"""
    push eax
    push ebx
    mov ebx, [{COUNTER_SLOT:#x}]
    mov [{LOG:#x} + ebx * 4], ecx
    inc dword ptr [{COUNTER_SLOT:#x}]
    mov al, 0x20
    out 0x20, al
    pop ebx
    pop eax
    iretd
"""
# the loop also clears and sets IF, so that IRQs become pending while IF=0
LOOP = compute_loop(2_000_000).replace("dec ecx", "cli\nimul eax, eax, 5\nsti\ndec ecx")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    data, _ = build_protected(IdtGuest(before=program_pit(10_000), fault="nop", flags=0x202, after=LOOP,
                                       handlers={8: HANDLER}))
    path = tmp_path_factory.mktemp("slicing") / "timer.bin"
    path.write_bytes(data)
    return str(path)


def outcome(image: str, budget: int | None) -> tuple:
    machine = Machine(16, deterministic=True)
    machine.load(image)
    while True:
        stop = machine.run(max_instructions=budget) if budget else machine.run()
        if stop.reason is not StopReason.BUDGET:
            break
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    state = machine.cpu_state()
    count = machine.ram.u32(COUNTER_SLOT)
    where = machine.ram.read(LOG, 4 * count)                # the loop iteration each IRQ landed in
    return (machine.interrupts.irq_count, count, where, machine.instructions, state.gpr["rax"], machine.rip)


@pytest.mark.parametrize("budget", [100_003, 7_919])
def test_runs_cut_into_budgets_end_exactly_as_one_run(image, budget):
    straight = outcome(image, None)
    assert straight[0] > 100                                # interrupts did happen
    assert outcome(image, budget) == straight
