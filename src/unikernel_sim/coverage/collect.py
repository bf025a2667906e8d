"""Coverage of a machine's kernel: its gcc counters now, and the .gcda files for them."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from unikernel_sim.coverage.gcda import ObjectCounters, read_objects, write_all
from unikernel_sim.errors import ImageError

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

START, END = "__gcov_info_start", "__gcov_info_end"


def counters_of(machine: "Machine") -> list[ObjectCounters]:
    """The kernel's coverage counters as they stand in guest memory."""
    start, end = machine.symbols.address_of(START), machine.symbols.address_of(END)
    where = machine.kernel.path if machine.kernel is not None else None
    if start is None or end is None or end <= start:
        raise ImageError("the kernel has no coverage counters", where=where,
                         hint="build it with gcc --coverage -fprofile-info-section and keep the .gcov_info "
                              f"section between {START} and {END} (docs/profiling.md)")
    try:
        return read_objects(machine.memory.read, start, end)
    except ValueError as error:
        raise ImageError(f"cannot read its coverage counters: {error}", where=where) from None


def write_coverage(objects: list[ObjectCounters], directory: str) -> list[Path]:
    """Add the counters to the .gcda files under directory (a lock keeps parallel
    writers, pytest-xdist's workers, from losing each other's runs)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    names = [os.path.dirname(info.filename) for info in objects if os.path.isabs(info.filename)]
    root = os.path.commonpath(names) if names else None
    with open(Path(directory) / ".unisim-coverage.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return write_all(objects, directory, root)
