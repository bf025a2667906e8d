"""Profile-guided rebuilds of the firmware with gcc: the boot-1 -> boot-N loop, closed.

1. Build the firmware with gcc's arc counters (`-fprofile-generate`, read out of guest
   memory as for coverage: coverage/gcda.py; value profiling and the time profiler are
   off, because their libgcov helpers need the hosted runtime).
2. Run the training job on it in the emulator; write the .gcda files where gcc expects
   them (beside each object).
3. Rebuild *in the same directory* with `-fprofile-use`: gcc names the profile of a
   static function after the object's path, so the objects must keep their names.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from unikernel_sim.coverage.collect import counters_of
from unikernel_sim.coverage.gcda import write_all
from unikernel_sim.firmware import build_firmware, firmware_dir

GENERATE_FLAGS = "-fprofile-generate -fno-profile-values -fno-profile-reorder-functions"
USE_FLAGS = "-fprofile-use -Wno-error=missing-profile"


def build_pgo_firmware(train: Callable[[str], object], variant: str = "pgo") -> Path:
    """The firmware rebuilt with the profile of train(kernel_path) -> the Machine after
    the training run. Returns the path of the profile-guided kernel.elf."""
    build = firmware_dir() / "build" / variant
    shutil.rmtree(build, ignore_errors=True)
    instrumented = build_firmware(variant, {"COVERAGE": "1", "EXTRA_CFLAGS": GENERATE_FLAGS})
    machine = train(str(instrumented))
    write_all(counters_of(machine), None)                   # beside each object, as gcc expects
    for stale in [*build.rglob("*.o"), instrumented]:
        stale.unlink()
    return build_firmware(variant, {"EXTRA_CFLAGS": USE_FLAGS})
