"""pytest plugin (entry point ``pytest11``): fixtures for kernels under test.

``unisim_firmware``: path of the bundled reference unikernel, built once per
session with the system toolchain.
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def unisim_firmware() -> str:
    from unikernel_sim.firmware import build_firmware

    return str(build_firmware())
