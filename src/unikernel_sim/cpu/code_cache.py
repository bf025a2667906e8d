"""Keeping Unicorn's translation cache honest across snapshot restores.

Restoring a snapshot puts old bytes back into RAM behind the translation
cache's back. A cached translation is only wrong if the code bytes it came
from differ from what RAM will hold after the restore. QEMU keeps the cache
consistent with the current RAM (it invalidates translations when the guest
writes code), so comparing the kernel's executable segments now with the
snapshot's tells whether a flush is needed. A snapshot keeps the code bytes
themselves, shared with the previous snapshot while the code has not changed
(one copy for thousands of checkpoints): the comparison is a memcmp, 5 us for
the firmware's 49 KiB where a CRC-32 of them took 16 us.

Why not always flush: a full retranslation per guest call (~1.3 ms measured;
400 instead of 1,000+ calls per second). Why not a write hook on the code:
any UC_HOOK_MEM_WRITE makes every guest store check hooks (measured: TinyLlama
generation 1.9 s instead of 1.1 s).

Code the guest generates outside its image (a JIT, a loaded program) is not
compared: restore with flush=True after running such code.
"""
from __future__ import annotations

import ctypes

from unicorn import Uc, UcError

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.unicorn_compat import UcContext, engine_handle, native_function_address
from unikernel_sim.identity_cache import IdentityCache
from unikernel_sim.memory.ram import Ram
from unikernel_sim.memory.ram_snapshots import RamLevel

CODE_NOT_COMPARED = (1 << 64) - 1     # _snapshot_restore.c: flush without comparing
RESTORE_REQUESTS = 16                 # the latest snapshots whose C request is kept


class CodeRange(ctypes.Structure):
    """struct code_range (_snapshot_restore.c): code to compare with a snapshot's copy."""
    _fields_ = [("start", ctypes.c_uint64), ("length", ctypes.c_uint64), ("saved", ctypes.c_void_p)]


class RestoreFunctions(ctypes.Structure):
    """struct restore_functions (_snapshot_restore.c): the calls a restore makes."""
    _fields_ = [("context_restore", ctypes.c_void_p), ("mem_read", ctypes.c_void_p),
                ("ram_restore", ctypes.c_void_p), ("page_changed", ctypes.c_void_p), ("ram", ctypes.c_void_p),
                ("ram_status", ctypes.c_int64)]


class RestoreRequest(ctypes.Structure):
    """struct restore_request (_snapshot_restore.c): one snapshot's arguments, made once."""
    _fields_ = [("context", ctypes.c_void_p), ("ranges", ctypes.c_void_p), ("count", ctypes.c_uint64),
                ("index", ctypes.c_uint64), ("serial", ctypes.c_uint64)]


check_mirror(CodeRange, "struct code_range", "code_range_size")
check_mirror(RestoreRequest, "struct restore_request", "restore_request_size")
check_mirror(RestoreFunctions, "struct restore_functions", "restore_functions_size")
_snapshot_restore = library.snapshot_restore
_snapshot_restore.restype = ctypes.c_int
_snapshot_restore.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]


class CodeCache:
    def __init__(self, uc: Uc, ram: Ram) -> None:
        self.uc = uc
        self.ram = ram
        self.flushes = 0
        self._ranges: list[tuple[int, int]] = []      # physical [start, end) of code
        self._last: tuple[bytes, ...] = ()             # the latest fingerprint (shared by snapshots)
        self._requests = IdentityCache(RESTORE_REQUESTS)   # a snapshot's context -> (its C request, byref)
        self._handle = engine_handle(uc)
        self._functions = RestoreFunctions(
            context_restore=native_function_address("uc_context_restore"),
            mem_read=native_function_address("uc_mem_read"),
            ram_restore=ram.snapshots.native_restore, page_changed=ram.snapshots.native_page_changed,
            ram=ram.snapshots.native)
        self._functions_ref = ctypes.byref(self._functions)

    def watch(self, start: int, end: int) -> None:
        """Compare [start, end) (physical addresses of code) across restores."""
        self._ranges.append((start, end))

    def fingerprint(self) -> tuple[bytes, ...]:
        """The code bytes now, the previous fingerprint's objects where they are equal."""
        image = tuple(self.ram.read(start, end - start) for start, end in self._ranges)
        if image == self._last:
            return self._last
        self._last = image
        return image

    def restore(self, context: UcContext, level: RamLevel, snapshot_fingerprint: tuple[bytes, ...] | None, *,
                flush: bool = False) -> None:
        """Put a snapshot's memory (its level in memory/ram_snapshots.py) and registers
        (a CPU-only context) back, then flush the cache if the code now in RAM differs
        from the snapshot's or flush is asked. One C call: the comparison must see RAM
        before the restore replaces it."""
        request = self._requests.get(context)         # a context belongs to one snapshot
        if request is None:
            request = self._requests.keep(context, self._request(context, level, snapshot_fingerprint))
        status = _snapshot_restore(self._handle, self._functions_ref, request[1], flush)
        if self._functions.ram_status:
            self.ram.snapshots.raise_for(self._functions.ram_status, "restoring a snapshot")
        if status < 0:
            raise UcError(-status)
        if status:
            self.flush()

    def _request(self, context: UcContext, level: RamLevel, fingerprint: tuple[bytes, ...] | None) -> tuple:
        """The C request restoring this snapshot and a reference to it for ctypes, kept with
        what it points into (the context, the ranges, the fingerprint's bytes)."""
        ranges = self._ranges_for(fingerprint)
        request = RestoreRequest(ctypes.cast(context.context, ctypes.c_void_p),
                                 ctypes.cast(ranges, ctypes.c_void_p) if ranges is not None else None,
                                 CODE_NOT_COMPARED if ranges is None else len(ranges), *level)
        return (request, ranges, fingerprint), ctypes.byref(request)

    def _ranges_for(self, fingerprint: tuple[bytes, ...] | None) -> ctypes.Array | None:
        """The C ranges comparing RAM with fingerprint (they point into its bytes); None
        when it cannot be compared (no fingerprint, other ranges)."""
        if fingerprint is None or len(fingerprint) != len(self._ranges) or any(
                len(code) != end - start for (start, end), code in zip(self._ranges, fingerprint)):
            return None
        return (CodeRange * len(fingerprint))(*(
            CodeRange(start, end - start, ctypes.cast(ctypes.c_char_p(code), ctypes.c_void_p))
            for (start, end), code in zip(self._ranges, fingerprint)))

    def flush(self) -> None:
        self.uc.ctl_flush_tb()
        self.flushes += 1
