"""Snapshots of guest memory by write protection, instead of Unicorn's copy-on-write
regions (the C side, _ram_snapshots.c, says how).

Why not Unicorn's: its memory snapshots (UC_CTL_CONTEXT_MEMORY) restore by rebuilding
QEMU's memory map and flushing its TLB (~4 us however little changed), and after a
restore each page the guest stores to is copied into a new region whose cost grows
with their number: 19 us a page after 64 pages, 688 us a page at 2,048 (an engine
that ever unmapped RAM pays several times more; docs/unicorn-quirks.md). A guest call
that writes 8 MiB after a restore paid ~1.4 s in copies. Here the first store to a
page after a snapshot costs one signal, a 4 KiB copy and an mprotect, whatever came
before; a restore copies back only the pages written since.

The chain of levels is Unicorn's: restoring a snapshot drops the newer ones, and a
dropped snapshot cannot be restored (StaleSnapshotError says so instead of restoring
garbage).
"""
from __future__ import annotations

import ctypes
import gc
import os
import weakref

from unicorn import Uc

from unikernel_sim.errors import HostLimitError, UsageError
from unikernel_sim.memory import _ram_snapshots
from unikernel_sim.records import Record

_lib = ctypes.CDLL(_ram_snapshots.__file__, use_errno=True)
_new = _lib.ram_snapshots_new
_new.restype = ctypes.c_void_p
_new.argtypes = []
_add_region = _lib.ram_snapshots_add_region
_add_region.restype = ctypes.c_void_p
_add_region.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
_take = _lib.ram_snapshots_take
_take.restype = ctypes.c_int64
_take.argtypes = [ctypes.c_void_p]
_restore = _lib.ram_snapshots_restore
_restore.restype = ctypes.c_int
_restore.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
_ensure_handler = _lib.ram_snapshots_ensure_handler
_ensure_handler.restype = ctypes.c_int
_ensure_handler.argtypes = [ctypes.c_void_p]
_free = _lib.ram_snapshots_free
_free.restype = None
_free.argtypes = [ctypes.c_void_p]
_stats = _lib.ram_snapshots_stats
_stats.restype = None
_stats.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

_STALE_LEVEL, _NO_MEMORY = -1, -2        # _ram_snapshots.c SNAP_ codes (the rest: mprotect failed)


class StaleSnapshotError(UsageError):
    """The snapshot's level was dropped: an older snapshot was restored after it was taken."""


class RamLevel(Record):
    """A snapshot's place in the chain: its index (0 = the oldest) and the serial that
    proves the level is still the one taken."""

    index: int
    serial: int


class RamStats(Record):
    levels: int               # snapshots alive in the chain
    pages_saved: int          # pages copied by the write-fault handler, all time
    pages_restored: int       # pages copied back by restores, all time
    writable_runs: int        # runs of writable pages now (each a kernel VMA)
    last_errno: int           # the latest mprotect failure's errno, 0 if none


def _release(native: int, uc_finalizer) -> None:
    """Free the memory once the engine using it is closed (its finalizer runs first)."""
    if uc_finalizer is not None:
        uc_finalizer()
    _free(native)


class RamSnapshots:
    """The guest memory regions of one engine and their snapshots."""

    def __init__(self, uc: Uc) -> None:
        native = _new()
        if not native:
            gc.collect()                      # machines no longer used but not yet collected (cycles)
            native = _new()
        if not native:
            raise HostLimitError("no room to watch another machine's memory (4,096 alive at once)",
                                 hint="let machines no longer used be garbage-collected")
        self.native = native                        # struct ram_snapshots, for C callers too (cpu/_snapshot_restore.c)
        self.native_restore = ctypes.cast(_restore, ctypes.c_void_p).value
        self.native_page_changed = ctypes.cast(_lib.ram_snapshots_page_changed, ctypes.c_void_p).value
        self._stats = (ctypes.c_uint64 * 5)()
        self._finalizer = weakref.finalize(uc, _release, native, getattr(uc, "_Uc__finalizer", None))

    def allocate(self, size: int) -> int:
        """size bytes of zeroed guest memory (committed as touched); its host address.
        OSError when the host refuses; only before the first snapshot."""
        address = _add_region(self.native, size)
        if not address:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        return address

    def take(self) -> RamLevel:
        serial = _take(self.native)
        if serial < 0:
            self.raise_for(serial, "taking a snapshot")
        return RamLevel(self.stats().levels - 1, serial)

    def restore(self, level: RamLevel) -> None:
        status = _restore(self.native, level.index, level.serial)
        if status:
            self.raise_for(status, "restoring a snapshot")

    def ensure_handler(self) -> None:
        """Our write-fault handler in front again, if a snapshot exists and another
        handler was installed over it since (the run loop calls this at each run)."""
        status = _ensure_handler(self.native)
        if status:
            raise HostLimitError(f"cannot install the SIGSEGV handler guest memory snapshots need: "
                                 f"{os.strerror(-status)}", hint="do not block or take over SIGSEGV")

    def stats(self) -> RamStats:
        _stats(self.native, self._stats)
        return RamStats(*self._stats)

    def raise_for(self, status: int, doing: str) -> None:
        """The error for a negative status of the C side."""
        if status == _STALE_LEVEL:
            raise StaleSnapshotError("this snapshot was dropped when an older one was restored",
                                     hint="restore a snapshot taken after that restore, or the older one")
        if status == _NO_MEMORY:
            raise HostLimitError(f"the host refused memory {doing}", hint="free memory, or take fewer snapshots")
        error = self.stats().last_errno
        raise HostLimitError(f"mprotect of guest memory failed {doing}: {os.strerror(error)}",
                             hint="raise vm.max_map_count, or take fewer snapshots")
