"""A guest call must end at its return address even when Unicorn does not run the
sentinel's code hook: Unicorn 2.1.4 skips code hooks while a stop is pending, and a
host-timer stop can land between the callee's `ret` and the hook (seen as a call
that ran on into VGA memory, once in thousands of calls at a 10 kHz tick)."""
from __future__ import annotations

import re

import pytest

from unikernel_sim.cpu.unicorn_compat import delete_native_hook
from unikernel_sim.errors import UsageError
from unikernel_sim.kernel_lib.scratch import GuestScratch

TEXT = b"hello, unikernel"


def test_call_returns_when_the_sentinel_hook_never_fires(unisim_booted):
    machine = unisim_booted.fresh()
    scratch = GuestScratch.after_heap(machine)
    text = scratch.put_c_string(TEXT)
    assert machine.call("strlen", text) == len(TEXT)            # the normal path, and the caller exists
    caller = machine._caller
    delete_native_hook(machine.uc, caller.hook)                 # the worst case: the hook is always skipped
    machine.uc.ctl_flush_tb()                                   # translated code carries the hook inline
    for _ in range(3):
        assert machine.call("strlen", text) == len(TEXT)        # Python's len() is the oracle


MMAP_LINE = re.compile(r"mmap: base=0x([0-9a-f]+) length=0x([0-9a-f]+) type=(\d+)")
MULTIBOOT_MEMORY_RESERVED = 2


def test_the_sentinel_lies_in_memory_the_kernel_was_told_is_reserved(unisim_booted):
    """The hlt stays at the sentinel between calls, so it must be memory no kernel uses:
    checked against the memory map as the firmware itself parsed and printed it."""
    machine = unisim_booted.fresh()
    machine.call("kernel_ready")
    sentinel = machine._caller.sentinel
    regions = [(int(base, 16), int(length, 16), int(kind))
               for base, length, kind in MMAP_LINE.findall(machine.serial.text())]
    assert regions, machine.serial.text()
    holding = [kind for base, length, kind in regions if base <= sentinel < base + length]
    assert holding == [MULTIBOOT_MEMORY_RESERVED]


def test_a_call_refused_for_a_bad_limit_leaves_the_guest_where_it_was(unisim_booted):
    """The arguments are in place before the run checks its limits: a refused call must
    put the guest's registers back, or the next run would start inside the callee."""
    machine = unisim_booted.fresh()
    before = machine.cpu_state()
    with pytest.raises(UsageError, match="timeout"):
        machine.call("strlen", 0x100000, timeout=-1)
    with pytest.raises(UsageError, match="budget"):
        machine.call("strlen", 0x100000, max_instructions=0)
    after = machine.cpu_state()
    assert (after.rip, after.gpr) == (before.rip, before.gpr)
