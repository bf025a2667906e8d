"""Whether this process may reserve what a machine needs, asked before asking.

Unicorn's translation buffer comes from QEMU code that prints "Could not
allocate dynamic translator buffer" and exits the process when the address
space limit (`ulimit -v`, RLIMIT_AS) is too small: no error reaches Python. So
the limit is compared with what a machine will reserve before the engine is
created, and a shortfall is one line with what to change.
"""
from __future__ import annotations

import os
import resource

from unikernel_sim.cpu.engine import PROBE_TRANSLATION_BUFFER, TRANSLATION_BUFFER
from unikernel_sim.errors import HostLimitError

MIB = 1 << 20
PROBE_ENGINES = 2                    # a probe engine of its own (cpu/engine.py: made only for a probe run
                                     # outside a machine's lent engine) and one more as margin
HEADROOM = 96 * MIB                  # Unicorn's own tables, thread stacks, Python's growth


def address_space_in_use() -> int | None:
    """Bytes of virtual address space this process has now (Linux), or None."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def check_address_space(ram_bytes: int) -> None:
    """HostLimitError when RLIMIT_AS cannot hold a machine with ram_bytes of RAM."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    in_use = address_space_in_use()
    if limit == resource.RLIM_INFINITY or in_use is None:
        return
    needed = ram_bytes + TRANSLATION_BUFFER + PROBE_ENGINES * PROBE_TRANSLATION_BUFFER + HEADROOM
    if in_use + needed > limit:
        raise HostLimitError(
            f"the address-space limit (ulimit -v {limit // 1024}) leaves {max(0, limit - in_use) // MIB} MiB, "
            f"and a {ram_bytes // MIB} MiB machine needs about {needed // MIB} MiB more",
            hint=f"raise it to at least {(in_use + needed) // 1024} KiB (ulimit -v), or give a smaller --memory")
