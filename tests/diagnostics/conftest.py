from __future__ import annotations

import pytest

from unikernel_sim.firmware import build_firmware
from unikernel_sim.pytest_plugin import boot_to_ready


@pytest.fixture(scope="session")
def booted_1g(unisim_firmware):
    """The firmware with 1 GiB of RAM told to use 512 MiB (mem=512): addresses past its
    identity map are RAM, unmapped."""
    return boot_to_ready(unisim_firmware, cmdline="job=idle mem=512", deterministic=True, memory_mb=1024,
                         check_returns=True)


@pytest.fixture(scope="session")
def no_frame_pointer_firmware():
    return str(build_firmware("no-frame-pointer", {"EXTRA_CFLAGS": "-fomit-frame-pointer"}))
