"""A guest call must end at its return address even when Unicorn does not run the
sentinel's code hook: Unicorn 2.1.4 skips code hooks while a stop is pending, and a
host-timer stop can land between the callee's `ret` and the hook (seen as a call
that ran on into VGA memory, once in thousands of calls at a 10 kHz tick)."""
from __future__ import annotations

from unikernel_sim.kernel_lib.scratch import GuestScratch

TEXT = b"hello, unikernel"


def test_call_returns_when_the_sentinel_hook_never_fires(unisim_booted):
    machine = unisim_booted.fresh()
    scratch = GuestScratch.after_heap(machine)
    text = scratch.put_c_string(TEXT)
    assert machine.call("strlen", text) == len(TEXT)            # the normal path, and the caller exists
    caller = machine._caller
    machine.uc.hook_del(caller.hook)                            # the worst case: the hook is always skipped
    machine.uc.ctl_flush_tb()                                   # translated code carries the hook inline
    for _ in range(3):
        assert machine.call("strlen", text) == len(TEXT)        # Python's len() is the oracle
    assert machine.read_virtual(caller.sentinel, 1) == b"\xf4"  # the hlt that ended each call
