"""Port 0x61 reads served in C (cpu/_fast_ports.c) while the PIT's published value holds.

The oracle is the Python path the C one short-cuts (the PIT model that tests/devices/
test_i8254.py holds to the 8254 datasheet): the same guest, with the C path and with every
access through Python (FastPorts.disable, as --trace io does), must read the same bytes at
the same instructions. The guest is a TSC calibration of the usual kind: channel 2 in mode 0,
gate on, port 0x61 polled and every value kept.
"""
from __future__ import annotations

import pytest

from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

READS = 6000                           # 6 ms of deterministic reads (1 us each, and the loop)
LOG = 0x300000                         # one byte per read
COUNT = 2386                           # ~2 ms of PIT input clocks: OUT2 rises in the middle
OUT2, REFRESH = 0x20, 0x10
IN_AL_61 = bytes([0xE4, 0x61])
# gate 2 on, speaker off (0x61 = 1); channel 2, lobyte/hibyte, mode 0 (0x43 = 0xb0); the count
CALIBRATION = f"""
    mov al, 0x01
    out 0x61, al
    mov al, 0xb0
    out 0x43, al
    mov al, {COUNT & 0xFF}
    out 0x42, al
    mov al, {COUNT >> 8}
    out 0x42, al
    mov edi, {LOG:#x}
    mov ecx, {READS}
poll:
    in al, 0x61
    mov byte ptr [edi], al
    inc edi
    dec ecx
    jnz poll
    mov al, 0
    out 0xf4, al
"""


def boot(path: str, *, fast_path: bool, deterministic: bool = True) -> Machine:
    machine = Machine(16, deterministic=deterministic)
    machine.load(path)
    if not fast_path:
        machine.loop.fast_ports.disable()
    return machine


def finish(machine: Machine) -> tuple[bytes, int]:
    stop = machine.run(max_instructions=10_000_000)
    assert stop.reason is StopReason.GUEST_EXIT, stop.summary
    return bytes(machine.ram.read(LOG, READS)), machine.instructions


def test_the_c_path_reads_what_python_reads(make_guest):
    path = make_guest(CALIBRATION)
    fast, slow = boot(path, fast_path=True), boot(path, fast_path=False)
    reads, instructions = finish(fast)
    assert (reads, instructions) == finish(slow)
    assert fast.loop.fast_ports.fast_accesses > READS * 9 // 10 and slow.loop.fast_ports.fast_accesses == 0
    out2 = [bool(value & OUT2) for value in reads]
    rises = sum(1 for before, after in zip(out2, out2[1:]) if after and not before)
    assert not out2[0] and out2[-1] and rises == 1          # mode 0: low, then high for good
    refresh = [bool(value & REFRESH) for value in reads]
    assert sum(1 for before, after in zip(refresh, refresh[1:]) if before != after) > 100


def test_a_restore_to_the_countdown_reads_low_again(make_guest):
    """A snapshot taken before OUT2 rises, restored after the C path has seen it high: the
    PIT's state is the same, but the time is before the span published since."""
    path = make_guest(CALIBRATION)
    machine = boot(path, fast_path=True)
    stop = machine.run(max_instructions=3000)                # inside the countdown's polls
    assert stop.reason is StopReason.BUDGET
    snapshot = machine.snapshot()
    finish(machine)
    machine.restore(snapshot)
    again = finish(machine)
    assert again == finish(boot(path, fast_path=True))
    assert again == finish(boot(path, fast_path=False))


def test_a_write_to_the_pit_withdraws_the_published_value(make_guest):
    """Halfway through, after OUT2 rose, the guest loads channel 2's count again (mode 0:
    OUT2 drops and the count starts over): the reads after the writes follow it."""
    restart = CALIBRATION.replace("    dec ecx\n    jnz poll\n", f"""    dec ecx
    cmp ecx, {READS // 2}
    jne same
    mov al, {COUNT & 0xFF}
    out 0x42, al
    mov al, {COUNT >> 8}
    out 0x42, al
same:
    test ecx, ecx
    jnz poll
""")
    path = make_guest(restart)
    reads, instructions = finish(boot(path, fast_path=True))
    assert (reads, instructions) == finish(boot(path, fast_path=False))
    out2 = [bool(value & OUT2) for value in reads]
    assert sum(1 for before, after in zip(out2, out2[1:]) if after and not before) == 2
    assert sum(1 for before, after in zip(out2, out2[1:]) if before and not after) == 1


@pytest.mark.parametrize("fast_path", [True, False])
def test_fast_mode_reads_a_low_then_high_out2(make_guest, fast_path):
    reads, _ = finish(boot(make_guest(CALIBRATION), fast_path=fast_path, deterministic=False))
    out2 = [bool(value & OUT2) for value in reads]
    assert not out2[0] and sum(1 for before, after in zip(out2, out2[1:]) if after != before) <= 1


def test_a_value_published_for_later_is_not_read_before(make_guest):
    """The C path serves a read only inside the published span [since, until)."""
    machine = boot(make_guest(CALIBRATION), fast_path=True)
    while bytes(machine.ram.read(machine.rip, 2)) != IN_AL_61:         # past the PIT's programming
        assert machine.run(max_instructions=1).reason is StopReason.BUDGET
    machine.loop.fast_ports.publish_port_b(OUT2, 10**9, None)      # "high from 1 s on"
    reads, _ = finish(machine)
    assert not reads[0] & OUT2                                       # read at ~10 us: the countdown


def test_a_restore_that_changes_the_pit_withdraws_the_published_value(make_guest):
    machine = boot(make_guest(CALIBRATION), fast_path=True)
    machine.run(max_instructions=3000)
    snapshot = machine.snapshot()
    finish(machine)
    assert machine.loop.fast_ports.state.port_b_ok == 1
    machine.restore(snapshot)
    assert machine.loop.fast_ports.state.port_b_ok == 0
