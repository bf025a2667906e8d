"""Deterministic mode counts instructions per translated block; the per-instruction hook
(what watchpoints switch on) counts them one by one. The second is the oracle for the
first: the same guest, stopped by the same budgets, must stand at the same instruction
with the same registers and the same count either way, interrupts included (a PIT at
10 kHz, an IRQ handler, `cli`/`sti` in the loop, RDTSC read inside a block)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interrupts.harness import HANDLERS, COUNTER_SLOT, IdtGuest, build_protected, compute_loop, program_pit
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

TSC_LOG = 0x210000
HANDLER = f"""
    push eax
    push edx
    rdtsc
    mov [{TSC_LOG:#x}], eax
    inc dword ptr [{COUNTER_SLOT:#x}]
    mov al, 0x20
    out 0x20, al
    pop edx
    pop eax
    iretd
"""
INC_IN_HANDLER = HANDLERS + 1 + 1 + 2 + 5       # push eax; push edx; rdtsc; mov [imm32], eax
LOOP = compute_loop(200_000).replace("dec ecx", "cli\nimul eax, eax, 5\nsti\ndec ecx")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    data, _ = build_protected(IdtGuest(before=program_pit(10_000), fault="nop", flags=0x202, after=LOOP,
                                       handlers={8: HANDLER}))
    path = tmp_path_factory.mktemp("counting") / "timer.bin"
    path.write_bytes(data)
    return str(path)


def state_after(path: str, budgets: list[int], per_instruction: bool, breakpoint_hits: int = 0) -> list[tuple]:
    """Run by budgets, then (if asked) to a breakpoint inside the IRQ handler's block a
    few times, then to the guest's exit; what the machine shows at every stop."""
    machine = Machine(16, deterministic=True)
    machine.load(path)
    if per_instruction:
        machine.clock.start_counting(per_instruction=True)
    seen = []

    def note(stop) -> None:
        cpu = machine.cpu_state()
        seen.append((stop.reason, machine.clock.instructions, cpu.rip, cpu.gpr["rax"], cpu.gpr["rcx"],
                     machine.ram.u32(COUNTER_SLOT), machine.ram.u32(TSC_LOG)))

    for budget in budgets:
        stop = machine.run(max_instructions=budget)
        note(stop)
        if stop.reason is not StopReason.BUDGET:
            return seen
    if breakpoint_hits:
        machine.add_breakpoint(INC_IN_HANDLER)
        for _ in range(breakpoint_hits):
            note(machine.run())
        machine.remove_breakpoint(INC_IN_HANDLER)
    note(machine.run())
    return seen


def test_the_image_takes_timer_interrupts(image):
    final = state_after(image, [10_000_000], per_instruction=False)[-1]
    assert final[0] is StopReason.GUEST_EXIT and final[5] > 5          # IRQs were taken


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budgets=st.lists(st.integers(min_value=1, max_value=150_000), min_size=1, max_size=6),
       breakpoint_hits=st.integers(min_value=0, max_value=3))
def test_stops_match_the_per_instruction_count(image, budgets, breakpoint_hits):
    """Budgets, breakpoints in the middle of a block, and the guest's exit (a port
    write that lands at the next memory access, Q25)."""
    by_block = state_after(image, budgets, False, breakpoint_hits)
    assert by_block == state_after(image, budgets, True, breakpoint_hits)
    assert by_block[-1][0] is StopReason.GUEST_EXIT
