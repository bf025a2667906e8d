"""Keeping Unicorn's translation cache honest across snapshot restores.

Restoring a snapshot puts old bytes back into RAM behind the translation
cache's back. A cached translation is only wrong if the code bytes it came
from differ from what RAM will hold after the restore. QEMU keeps the cache
consistent with the current RAM (it invalidates translations when the guest
writes code), so comparing the kernel's executable segments now with the
snapshot's tells whether a flush is needed: a CRC-32 of each, a few
microseconds for a small kernel.

Why not always flush: a full retranslation per guest call (~1.3 ms measured;
400 instead of 1,000+ calls per second). Why not a write hook on the code:
any UC_HOOK_MEM_WRITE makes every guest store check hooks (measured: TinyLlama
generation 1.9 s instead of 1.1 s).

Code the guest generates outside its image (a JIT, a loaded program) is not
compared: restore with flush=True after running such code.
"""
from __future__ import annotations

import zlib
from unicorn import Uc

from unikernel_sim.memory.ram import Ram


class CodeCache:
    def __init__(self, uc: Uc, ram: Ram) -> None:
        self.uc = uc
        self.ram = ram
        self.flushes = 0
        self._ranges: list[tuple[int, int]] = []      # physical [start, end) of code

    def watch(self, start: int, end: int) -> None:
        """Compare [start, end) (physical addresses of code) across restores."""
        self._ranges.append((start, end))

    def fingerprint(self) -> int:
        crc = 0
        for start, end in self._ranges:
            crc = zlib.crc32(self.ram.read(start, end - start), crc)
        return crc

    def before_restore(self, snapshot_fingerprint: int | None, *, flush: bool = False) -> bool:
        """Whether the cache must be flushed once the snapshot's RAM is back."""
        return flush or snapshot_fingerprint is None or self.fingerprint() != snapshot_fingerprint

    def flush(self) -> None:
        self.uc.ctl_flush_tb()
        self.flushes += 1
