"""Fixtures for the guest regression suites: the booted reference firmware,
an interrupt storm, and the firmware build variants that reintroduce the bugs."""
from __future__ import annotations

import pytest

from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tests_guest_support import storm_from  # noqa: E402



@pytest.fixture(scope="session")
def storm_booted(unisim_firmware):
    """Deterministic at 10 ns per instruction, so a 1.68 us timer fires every ~170 instructions."""
    return boot_to_ready(unisim_firmware, deterministic=True, instructions_per_second=100_000_000)


@pytest.fixture
def storm_machine(storm_booted):
    return storm_from(storm_booted)


@pytest.fixture(scope="session")
def red_zone_variant():
    """serial_put_uint's digits in a leaf function's red zone: built WITHOUT -mno-red-zone."""
    return str(build_firmware("bug-redzone", {"RED_ZONE": "-mred-zone"}))


@pytest.fixture(scope="session")
def unbounded_malloc_variant():
    """The bump allocator without its bounds check, heap placed without looking at the identity map."""
    return str(build_firmware("bug-malloc", {"EXTRA_CFLAGS": "-DMALLOC_BUG_NO_BOUNDS_CHECK"}))


@pytest.fixture(autouse=True)
def no_root_cause_hints_on_the_clean_firmware(request):
    """The clean firmware's whole guest suite must not make any checker fire."""
    yield
    if "unisim_booted" in request.fixturenames or "unisim_machine" in request.fixturenames:
        booted = request.getfixturevalue("unisim_booted")
        assert booted.machine.red_zone.hits == [], "red-zone false positive on the clean firmware"
        assert booted.machine.alignment_violations == []
