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

from unicorn import Uc

from unikernel_sim.cpu.unicorn_compat import mem_read_into
from unikernel_sim.memory.ram import Ram

_memcmp = ctypes.CDLL(None).memcmp
_memcmp.restype = ctypes.c_int
_memcmp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]


class CodeCache:
    def __init__(self, uc: Uc, ram: Ram) -> None:
        self.uc = uc
        self.ram = ram
        self.flushes = 0
        self._ranges: list[tuple[int, int]] = []      # physical [start, end) of code
        self._last: tuple[bytes, ...] = ()             # the latest fingerprint (shared by snapshots)
        self._buffers: dict[int, ctypes.Array] = {}    # size -> where the code is read to compare

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

    def before_restore(self, snapshot_fingerprint: tuple[bytes, ...] | None, *, flush: bool = False) -> bool:
        """Whether the cache must be flushed once the snapshot's RAM is back. The code
        is read into buffers kept for it and compared with memcmp: no allocation per
        restore (the binding's mem_read made a 49 KiB bytearray each time)."""
        if flush or snapshot_fingerprint is None:
            return True
        if len(snapshot_fingerprint) != len(self._ranges):
            return True
        for (start, end), code in zip(self._ranges, snapshot_fingerprint):
            buffer = self._buffer(end - start)
            if len(code) != len(buffer) or not mem_read_into(self.uc, start, buffer):
                return True
            if _memcmp(buffer, code, len(buffer)):
                return True
        return False

    def _buffer(self, size: int) -> ctypes.Array:
        buffer = self._buffers.get(size)
        if buffer is None:
            buffer = self._buffers[size] = ctypes.create_string_buffer(size)
        return buffer

    def flush(self) -> None:
        self.uc.ctl_flush_tb()
        self.flushes += 1
