"""Fixtures for the guest regression suites: the booted reference firmware,
an interrupt storm, and the firmware build variants that reintroduce the bugs."""
from __future__ import annotations

import pytest

from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready

PIT_INPUT_HZ = 1_193_182
STORM_DIVISOR = 2           # the shortest period mode 2 allows: 1.68 us


@pytest.fixture(scope="session")
def storm_booted(unisim_firmware):
    """Deterministic at 10 ns per instruction, so a 1.68 us timer fires every ~170 instructions."""
    return boot_to_ready(unisim_firmware, deterministic=True, instructions_per_second=100_000_000)


@pytest.fixture
def storm_machine(storm_booted):
    machine = storm_booted.fresh()
    assert machine.call("pit_init", PIT_INPUT_HZ // STORM_DIVISOR) == 0
    return machine


@pytest.fixture(scope="session")
def red_zone_variant():
    """serial_put_uint's digits in a leaf function's red zone: built WITHOUT -mno-red-zone."""
    return str(build_firmware("bug-redzone", {"RED_ZONE": "-mred-zone"}))


@pytest.fixture(scope="session")
def unbounded_malloc_variant():
    """The bump allocator without its bounds check, heap placed without looking at the identity map."""
    return str(build_firmware("bug-malloc", {"EXTRA_CFLAGS": "-DMALLOC_BUG_NO_BOUNDS_CHECK"}))
