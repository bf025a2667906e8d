"""HPET main-counter reads served in C (cpu/hpet_counter.py, _hpet_counter.c).

Oracles: the device model's own Hpet.counter for the same clock (hypothesis over the
counter's state and the time), and the same guest run with the C reads switched off,
which must print the same counters tick for tick in deterministic mode."""
from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unikernel_sim.cpu.native import library
from unikernel_sim.devices.hpet import HPET_BASE, MAIN_COUNTER
from unikernel_sim.machine import Machine

DATA = Path(__file__).resolve().parents[1] / "data" / "grub_reference"
READ = library.hpet_counter_read
READ.restype = ctypes.c_uint64
READ.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_void_p]


@pytest.fixture(scope="module")
def deterministic_machine() -> Machine:
    return Machine(16, deterministic=True)


@settings(max_examples=300, deadline=None)
@given(running=st.booleans(), at_start=st.integers(0, (1 << 64) - 1), start_ns=st.integers(0, 1 << 50),
       instructions=st.integers(0, 1 << 52), half=st.sampled_from([0, 4]), size=st.sampled_from([1, 2, 4, 8]))
def test_a_counter_read_in_c_is_what_the_model_computes(deterministic_machine, running, at_start, start_ns,
                                                         instructions, half, size):
    machine = deterministic_machine
    hpet, path = machine.board.hpet, machine.loop.hpet_counter
    hpet.config = int(running)
    hpet.counter_at_start, hpet.start_ns = at_start, start_ns
    hpet.publish()
    machine.clock.state.instructions = instructions
    if half + size > 8:
        size = 4
    expected = (hpet.counter(machine.clock.now_ns()) >> (8 * half)) & ((1 << (8 * size)) - 1)
    assert READ(None, MAIN_COUNTER + half, size, ctypes.addressof(path.state)) == expected


def run_probe(*, deterministic: bool = True, c_reads: bool = True, tracer=None) -> tuple[str, int]:
    """The one-shot probe (it polls the counter for 8 ms): (what it printed, reads served in C)."""
    machine = Machine(512, deterministic=deterministic)
    machine.load(str(DATA / "probe_hpet_oneshot.elf"))
    machine.loop.hpet_counter.state.served = int(c_reads)
    if tracer is not None:
        machine.board.mmio.tracer = tracer
    stop = machine.run(timeout=60)
    assert stop.reason.value == "guest-exit", stop.summary
    return machine.serial.text(), machine.loop.hpet_counter.reads


def test_a_guest_reads_the_same_counters_tick_for_tick_with_and_without_the_c_reads():
    with_c, served = run_probe(c_reads=True)
    in_python, none = run_probe(c_reads=False)
    assert served > 1000 and none == 0
    assert with_c == in_python and "at-wrap-before-match ffffffff" in with_c


def test_while_mmio_is_traced_every_counter_read_reaches_python():
    seen = []
    _, served = run_probe(deterministic=False, tracer=lambda kind, address, size, value: seen.append((kind, address)))
    assert served == 0
    assert ("read", HPET_BASE + MAIN_COUNTER) in seen
