"""Snapshots: CPU, RAM, devices, clock and console come back; the translation
cache is flushed when the code changed."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from unikernel_sim import kernel_lib as kl
import guestkit


def test_restore_brings_back_ram_devices_clock_and_console(unisim_booted):
    machine = unisim_booted.fresh()
    stats = kl.heap_stats(machine)
    time_before = machine.clock.now_ns()
    serial_before = bytes(machine.serial.data)
    pic_mask = machine.board.pic.master.imr
    pointer = kl.malloc(machine, 4096)
    machine.ram.fill(pointer, 4096, 0x77)
    kl.serial_put_uint(machine, 12345)
    machine.call("pic_mask", 1)
    assert machine.board.pic.master.imr != pic_mask
    machine.restore(unisim_booted.snapshot)
    assert kl.heap_stats(machine) == stats
    assert machine.ram.read(pointer, 16) != b"\x77" * 16
    assert bytes(machine.serial.data) == serial_before
    assert machine.board.pic.master.imr == pic_mask
    assert machine.clock.now_ns() == time_before          # deterministic clock, exactly back
    assert kl.malloc(machine, 4096) == pointer            # and it all behaves the same again


def test_code_patched_after_the_snapshot_is_undone_on_restore(unisim_booted):
    machine = unisim_booted.fresh()
    address = machine.symbols.address_of("strlen")
    original = machine.call("strlen", machine.kernel.boot_info_address + 16)
    patch = guestkit.assemble("mov eax, 42\nret", address, bits=64)
    machine.ram.write(address, patch)                     # a host patch over translated code...
    machine.uc.ctl_remove_cache(address, address + len(patch))   # ...needs the cache told (docs/unicorn-quirks.md, Q6)
    assert machine.call("strlen", 0) == 42
    flushes = machine.code_cache.flushes
    machine.restore(unisim_booted.snapshot)
    assert machine.code_cache.flushes == flushes + 1       # the code differed: the cache was flushed
    assert machine.call("strlen", machine.kernel.boot_info_address + 16) == original


def test_restoring_unchanged_code_keeps_the_cache(unisim_booted):
    machine = unisim_booted.fresh()
    flushes = machine.code_cache.flushes
    for _ in range(3):
        machine.call("malloc", 64)
        machine.restore(unisim_booted.snapshot)
    assert machine.code_cache.flushes == flushes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1), same=st.booleans())
def test_a_restore_flushes_exactly_when_a_code_byte_differs(unisim_booted, position, same):
    """Any byte of the kernel's code, in its first page or its last, decides: the C
    comparison reads the code a page at a time (cpu/_snapshot_restore.c)."""
    machine = unisim_booted.fresh()
    start, end = machine.code_cache._ranges[0]
    address = start + min(int(position * (end - start)), end - start - 1)
    original = machine.ram.read(address, 1)[0]
    machine.ram.write(address, bytes([original if same else original ^ 0xFF]))
    flushes = machine.code_cache.flushes
    machine.restore(unisim_booted.snapshot)
    assert machine.code_cache.flushes == flushes + (0 if same else 1)
    assert machine.ram.read(address, 1)[0] == original


def test_a_call_that_fills_megabytes_after_a_restore_is_undone_by_the_next(unisim_booted):
    """8 MiB written by the guest after a restore (Unicorn's own snapshots made this cost
    ~1.4 s of page copies; memory/ram_snapshots.py): the next restore puts every byte
    back, the framebuffer's too."""
    from unikernel_sim.boot.vbe_bios import LFB_BASE

    machine = unisim_booted.fresh()
    size = 8 << 20
    pointer = kl.malloc(machine, size)
    machine.restore(unisim_booted.snapshot)
    before = machine.ram.read(pointer, size)
    framebuffer = bytes(machine.uc.mem_read(LFB_BASE, 4096))
    assert kl.malloc(machine, size) == pointer
    machine.call("memset", pointer, 0xA5, size)
    machine.uc.mem_write(LFB_BASE, b"\xff" * 4096)
    assert machine.ram.read(pointer + size - 16, 16) == b"\xa5" * 16
    machine.restore(unisim_booted.snapshot)
    assert machine.ram.read(pointer, size) == before
    assert bytes(machine.uc.mem_read(LFB_BASE, 4096)) == framebuffer


def test_restoring_a_snapshot_dropped_by_an_older_ones_restore_is_refused(unisim_booted):
    from unikernel_sim.errors import UsageError

    machine = unisim_booted.fresh()
    kl.malloc(machine, 64)
    newer = machine.snapshot()
    machine.restore(unisim_booted.snapshot)                # drops `newer`
    heap = kl.heap_stats(machine)
    with pytest.raises(UsageError, match="dropped when an older one was restored"):
        machine.restore(newer)
    assert kl.heap_stats(machine) == heap                  # nothing changed
