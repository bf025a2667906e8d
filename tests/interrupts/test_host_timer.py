"""The host-clock deadlines (cpu/_host_timer.c): a deadline that passes asks the
virtual clock for a stop and fires once; a disarmed one never fires; the output watch
fires only while the C port buffer holds bytes and retires when no run needs it; a
guest spinning forever is stopped by the wall-clock timeout and by the output watch
(its banner reaches the host while it spins). The oracle is the host's own clock."""
from __future__ import annotations

import ctypes
import threading
import time

import pytest

from unikernel_sim.cpu.host_timer import EVENT, NEVER, OUTPUT, OUTPUT_PERIOD_NS, TIMEOUT
from unikernel_sim.cpu.vclock import host_ns
from unikernel_sim.machine import Machine
from unikernel_sim.stops import StopReason

SETTLE_S = 0.2                  # far longer than the thread needs to wake on a loaded host


def wait_until(condition, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.001)
    return condition()


@pytest.fixture
def machine() -> Machine:
    return Machine(16)


def test_a_deadline_fires_once_and_asks_the_clock_for_a_stop(machine):
    timer, clock = machine.host_timer, machine.clock
    clock.cancel_async_stop()
    armed_at = host_ns()
    timer.arm(armed_at + 2_000_000, EVENT)
    assert wait_until(lambda: timer.state.fired & (1 << EVENT))
    assert host_ns() - armed_at >= 2_000_000                    # not before its time
    assert clock.state.async_stop == 1
    assert timer.take_fired(EVENT) and not timer.take_fired(EVENT)
    time.sleep(SETTLE_S)
    assert not timer.take_fired(EVENT)                          # still armed, in the past: no second fire


def test_a_disarmed_deadline_never_fires_and_kinds_are_independent(machine):
    timer = machine.host_timer
    timer.arm(host_ns() + 20_000_000, EVENT)
    timer.arm(host_ns() + 1_000_000, TIMEOUT)
    timer.arm(None, EVENT)
    assert wait_until(lambda: timer.state.fired & (1 << TIMEOUT))
    time.sleep(0.05)
    assert not timer.take_fired(EVENT) and timer.take_fired(TIMEOUT)
    assert timer.state.deadline[EVENT] == NEVER


def test_re_arming_forgets_that_a_deadline_fired(machine):
    timer = machine.host_timer
    timer.arm(host_ns() - 1, EVENT)
    assert wait_until(lambda: timer.state.fired & (1 << EVENT))
    timer.arm(host_ns() + 10 * 1_000_000_000, EVENT)
    assert not timer.take_fired(EVENT)


def test_the_output_watch_fires_only_with_bytes_waiting_and_retires_after_the_run(machine):
    timer = machine.host_timer
    length = ctypes.c_uint64(0)
    timer.start_run(None, ctypes.addressof(length))
    time.sleep(3 * OUTPUT_PERIOD_NS / 1e9)
    assert not timer.take_fired(OUTPUT)                         # nothing buffered: no stop
    length.value = 5
    assert wait_until(lambda: timer.state.fired & (1 << OUTPUT))
    length.value = 0
    timer.output_done()
    assert wait_until(lambda: timer.state.deadline[OUTPUT] == NEVER)
    timer.take_fired(OUTPUT)
    length.value = 5
    time.sleep(3 * OUTPUT_PERIOD_NS / 1e9)
    assert not timer.take_fired(OUTPUT)                         # retired: no run to stop


SPIN_AFTER_BANNER = """
    mov dx, 0x3f8
    mov al, 'o'
    out dx, al
    mov al, 'k'
    out dx, al
spin:
    jmp spin
"""


def test_a_spinning_guest_shows_its_banner_while_it_spins_and_ends_at_the_timeout(make_guest):
    machine = Machine(16)
    machine.load(make_guest(SPIN_AFTER_BANNER))
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(stop=machine.run(timeout=3)))
    start = time.monotonic()
    runner.start()
    shown = wait_until(lambda: machine.serial.text() == "ok", seconds=2.5)
    runner.join()
    assert shown                                                # within 2.5 s of a 3 s run: mid-run
    assert outcome["stop"].reason is StopReason.TIMEOUT and time.monotonic() - start >= 3


def test_a_run_without_timeout_is_not_ended_by_the_timeout_of_the_run_before(make_guest):
    """The run before leaves its TIMEOUT deadline armed (runs do not disarm at their
    end); a run without one must disarm it, or it would end at the old deadline."""
    machine = Machine(16)
    machine.load(make_guest(SPIN_AFTER_BANNER))
    assert machine.run(timeout=0.05).reason is StopReason.TIMEOUT
    machine.run(timeout=30, max_instructions=1)                 # leaves a 30 s deadline armed
    machine.host_timer.arm(host_ns() + 1_000_000, TIMEOUT)      # as if it were about to expire
    stop = machine.run(max_instructions=50_000_000)
    assert stop.reason is StopReason.BUDGET


def test_a_forked_child_gets_timer_threads_of_its_own(make_guest):
    """Threads do not survive fork(): a child using a machine made in the parent must start
    its own host-timer thread (the owner check uses a pid cached at import and updated by a
    pthread_atfork handler). If the child trusted the parent's thread, its timeout would
    never fire: the parent kills it after a bound and the test fails."""
    import os
    import signal

    machine = Machine(16)
    machine.load(make_guest(SPIN_AFTER_BANNER))
    assert machine.run(timeout=0.05).reason is StopReason.TIMEOUT     # the parent's thread exists
    child = os.fork()
    if child == 0:                                                    # the child: exit status is the verdict
        try:
            stop = machine.run(timeout=0.2)
            os._exit(0 if stop.reason is StopReason.TIMEOUT else 1)
        except BaseException:                                         # noqa: BLE001 - any failure is a 2
            os._exit(2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.01)
    else:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        pytest.fail("the child's run never reached its timeout")
    assert machine.run(timeout=0.05).reason is StopReason.TIMEOUT     # the parent's thread still works


def test_an_interrupt_asked_between_two_runs_stops_the_next_one_at_once(make_guest):
    """A debugger's interrupt (gdb's Ctrl-C, a client attaching) may arrive while no run is
    going on; the next run starts by dropping the stops the last run's deadlines asked for,
    but must keep this one: it stops before the spinning guest's first block, not at the
    next deadline of its own (here: none but a 20 s timeout)."""
    machine = Machine(16)
    machine.load(make_guest(SPIN_AFTER_BANNER))
    assert machine.run(timeout=0.05).reason is StopReason.TIMEOUT
    machine.loop.interrupt()
    start = time.monotonic()
    stop = machine.run(timeout=20)
    assert stop.reason is StopReason.INTERRUPTED and time.monotonic() - start < 10


def test_a_machine_that_ran_is_collected_and_its_threads_end(make_guest):
    """A Machine is a web of reference cycles (hooks and callbacks point back at it); the
    garbage collector must be able to free it, and with it stop its timer threads. A
    ctypes byref() kept on the host timer hid one edge of such a cycle from the collector
    and kept every machine, and its thread, alive."""
    import gc
    import os
    import weakref

    def live_threads() -> int:
        return len(os.listdir(f"/proc/{os.getpid()}/task"))

    gc.collect()
    before = live_threads()

    def run_one() -> weakref.ref:
        machine = Machine(16)
        machine.load(make_guest(SPIN_AFTER_BANNER))
        assert machine.run(timeout=0.02).reason is StopReason.TIMEOUT    # its host-timer thread runs
        return weakref.ref(machine)

    gone = [run_one() for _ in range(3)]
    gc.collect()
    assert all(ref() is None for ref in gone)
    assert wait_until(lambda: live_threads() <= before)
