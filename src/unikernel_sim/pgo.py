"""Profile-guided rebuilds of the firmware with gcc: the boot-1 -> boot-N loop, closed.

1. Build the firmware with gcc's arc counters (`-fprofile-generate`, read out of guest
   memory as for coverage: coverage/gcda.py; value profiling and the time profiler are
   off, because their libgcov helpers need the hosted runtime).
2. Run the training job on it in the emulator; write the .gcda files where gcc expects
   them (beside each object).
3. Rebuild *in the same directory* with `-fprofile-use`: gcc names the profile of a
   static function after the object's path, so the objects must keep their names.
   The training run also records the sizes memcpy and memset are called with
   (profiling/histograms.py); a size that most calls ask for gets a fixed-size fast path
   (-DMEMCPY_HOT_SIZE / -DMEMSET_HOT_SIZE, firmware/kernel_lib/libc/string.c).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from unikernel_sim.profiling.histograms import ArgumentHistograms

from unikernel_sim.coverage.collect import counters_of
from unikernel_sim.coverage.gcda import write_all
from unikernel_sim.firmware import build_firmware, firmware_dir

GENERATE_FLAGS = "-fprofile-generate -fno-profile-values -fno-profile-reorder-functions"
USE_FLAGS = "-fprofile-use -Wno-error=missing-profile"
HOT_SHARE = 0.5                       # a size gets a fast path when at least this share of calls ask for it
SPECIALISED = {"memcpy": "MEMCPY_HOT_SIZE", "memset": "MEMSET_HOT_SIZE"}


def build_pgo_firmware(train: Callable[[str, list], object], variant: str = "pgo") -> tuple[Path, dict[str, int]]:
    """The firmware rebuilt with the profile of train(kernel_path, on_loaded) -> the
    Machine after the training run (on_loaded: callbacks for boot(), which record the
    call sizes). Returns the profile-guided kernel.elf and the hot sizes it specialises."""
    build = firmware_dir() / "build" / variant
    shutil.rmtree(build, ignore_errors=True)
    instrumented = build_firmware(variant, {"COVERAGE": "1", "EXTRA_CFLAGS": GENERATE_FLAGS})
    recorders: list[ArgumentHistograms] = []
    machine = train(str(instrumented), [lambda m: recorders.append(ArgumentHistograms.with_defaults(m, []))])
    write_all(counters_of(machine), None)                   # beside each object, as gcc expects
    hot = hot_sizes(recorders[0].as_dict() if recorders else {})
    for stale in [*build.rglob("*.o"), instrumented]:
        stale.unlink()
    # a fast path changes its function's control flow: gcc then drops that function's
    # profile (a coverage-mismatch warning) and keeps the others'
    defines = " ".join(f"-D{SPECIALISED[name]}={size}" for name, size in sorted(hot.items()))
    if hot:
        defines += " -Wno-error=coverage-mismatch"
    return build_firmware(variant, {"EXTRA_CFLAGS": f"{USE_FLAGS} {defines}".strip()}), hot


def hot_sizes(histograms: dict) -> dict[str, int]:
    """Per specialisable function, the size at least HOT_SHARE of its calls asked for."""
    hot = {}
    for name in SPECIALISED:
        sizes: dict[int, int] = {}
        for counters in histograms.get(name, {}).values():
            for size, calls in counters.get("size", {}).items():
                sizes[int(size)] = sizes.get(int(size), 0) + calls
        total = sum(sizes.values())
        if total:
            size, calls = max(sizes.items(), key=lambda item: (item[1], -item[0]))
            if calls >= HOT_SHARE * total and size > 0:
                hot[name] = size
    return hot
