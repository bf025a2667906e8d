"""Fast mode under a fast timer: interrupts arrive at the programmed rate, and
guest arithmetic does not depend on where they land.

The guest counts with read-modify-write instructions on memory, the kind that
a stop landing inside the instruction would run twice (docs/unicorn-quirks.md
Q19), while the PIT interrupts it at 100 Hz; Python's own arithmetic is the
oracle for the sums.
"""
from __future__ import annotations

import pytest

from interrupts.harness import COUNTER_SLOT, IdtGuest, build_long
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

PIT_HZ = 1_193_182
TIMER_HZ = 100
PIT_COUNT = PIT_HZ // TIMER_HZ
ITERATIONS = 10_000_000
COUNT_SLOT = COUNTER_SLOT + 8
SUM_SLOT = COUNTER_SLOT + 16
BIOS_IRQ0_VECTOR = 0x08                     # the PIC's power-on vector base (as a BIOS leaves it)

TIMER_HANDLER = f"""
    push rax
    inc qword ptr [{COUNTER_SLOT:#x}]
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq
"""


def busy_guest() -> IdtGuest:
    return IdtGuest(
        before=f"""
            mov al, 0x34
            out 0x43, al
            mov al, {PIT_COUNT & 0xFF}
            out 0x40, al
            mov al, {PIT_COUNT >> 8}
            out 0x40, al
            mov al, 0xfe
            out 0x21, al
        """,
        fault="nop",
        flags=0x202,                         # IF=1
        after=f"""
            mov rcx, {ITERATIONS}
        work:
            inc qword ptr [{COUNT_SLOT:#x}]
            add qword ptr [{SUM_SLOT:#x}], rcx
            dec rcx
            jnz work
            mov al, 0
            out 0xf4, al
        """,
        handlers={BIOS_IRQ0_VECTOR: TIMER_HANDLER},
    )


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    image, _ = build_long(busy_guest())
    path = tmp_path_factory.mktemp("fast-timer") / "busy.bin"
    path.write_bytes(image)
    return str(path)


@pytest.mark.parametrize("timeout", [None, 60.0], ids=["no-timeout", "with-timeout"])
def test_fast_mode_delivers_the_programmed_rate_and_exact_sums(image_path, timeout):
    machine = Machine(16)
    machine.load(image_path)
    stop = machine.run(timeout=timeout)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    assert machine.ram.u64(COUNT_SLOT) == ITERATIONS
    assert machine.ram.u64(SUM_SLOT) == ITERATIONS * (ITERATIONS + 1) // 2
    ticks = machine.ram.u64(COUNTER_SLOT)
    assert ticks == machine.interrupts.irq_count
    # Edges the PIT produced over the virtual time that passed (host time in fast mode).
    edges = machine.clock.now_ns() * TIMER_HZ // 1_000_000_000
    assert edges >= 20, "the run was too short to say anything about the rate"
    # A lost stop (the host-timer bug this guards against) gave no ticks at all. At 100 Hz a
    # stop delivered late by the host's scheduling (other processes on the cores) still lands
    # within its 10 ms period; the rate at 1-2 kHz is measured by bench/fast_mode_stress.py
    # (docs/performance.md), not asserted here: a timing claim does not belong in a test.
    assert ticks >= 0.5 * edges, f"{ticks} timer interrupts for {edges} PIT periods"
