"""A request that waits while IF is clear (fast mode): the CPU takes it once IF is set,
and the guest is not stopped meanwhile (runloop.py PENDING_POLL_NS, HostTimer.poll_interrupts,
vclock_block). Oracles: the guest's own count of handler entries and where its loop counter
stood at the first one; the run loop's own slice count (the old way stopped every 20 us)."""
from __future__ import annotations

import pytest

from interrupts.harness import COUNTER_SLOT, IdtGuest, run_protected_to_exit
from unikernel_sim.machine import Machine

ECX_AT_FIRST = COUNTER_SLOT + 8
CLI_ITERATIONS = 40_000_000             # ~0.1 s of work with IRQ 0 waiting
# PIT channel 0 in mode 0 (interrupt on terminal count) with a 1 ms count, IRQ 0 unmasked: one
# edge, then nothing. Nothing else stops the guest after STI, so only the poll can deliver it.
ONE_PIT_EDGE = "mov al, 0x30\nout 0x43, al\nmov al, 0xa9\nout 0x40, al\nmov al, 0x04\nout 0x40, al\n" \
               "mov al, 0xfe\nout 0x21, al"
STI_ITERATIONS = 30_000_000
HANDLER = f"""
    cmp dword ptr [{COUNTER_SLOT:#x}], 0
    jne counted
    mov [{ECX_AT_FIRST:#x}], ecx
counted:
    inc dword ptr [{COUNTER_SLOT:#x}]
    push eax
    mov al, 0x20
    out 0x20, al
    pop eax
    iretd
"""
BODY = f"""
    mov ecx, {CLI_ITERATIONS}
masked:
    imul eax, eax, 3
    dec ecx
    jnz masked
    mov ecx, {STI_ITERATIONS}
    sti
open_loop:
    imul eax, eax, 3
    dec ecx
    jnz open_loop
    cli
    mov al, 0
    out 0xf4, al
"""


def run(tmp_path, deterministic: bool) -> Machine:
    return run_protected_to_exit(IdtGuest(before=ONE_PIT_EDGE, fault="nop", flags=0x2, after=BODY,
                                          handlers={0x08: HANDLER}), tmp_path, deterministic=deterministic)


@pytest.mark.parametrize("deterministic", [False, True], ids=["fast", "deterministic"])
def test_the_waiting_request_is_taken_right_after_sti(tmp_path, deterministic):
    """The one request, waiting since the cli phase, is taken once in the loop after STI,
    early in it (a poll period is a few thousand iterations; a busy host may delay the
    fast-mode poll by milliseconds, still far from the loop's ~0.1 s)."""
    machine = run(tmp_path, deterministic)
    assert machine.ram.u32(COUNTER_SLOT) == 1
    taken_at = STI_ITERATIONS - machine.ram.u32(ECX_AT_FIRST)
    assert 0 <= taken_at < STI_ITERATIONS // 3, taken_at


def test_fast_mode_does_not_stop_the_guest_while_it_waits(tmp_path):
    """~0.1 s of `cli` work with the request waiting: the old 20 us grid made thousands of stops."""
    machine = run(tmp_path, deterministic=False)
    assert machine.loop._slices_in_run < 200, machine.loop._slices_in_run
