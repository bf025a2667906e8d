"""Keeping Unicorn's translation cache honest across snapshot restores.

Restoring a snapshot puts old bytes back into RAM behind the translation
cache's back. A cached translation is only wrong if the code bytes it came
from changed, so the machine watches writes to the kernel's executable
segments (a write hook on those ranges only: free unless the guest writes its
own code) and flushes the whole cache on the next restore after such a write.
Flushing on every restore would cost a full retranslation per guest call
(~1.3 ms measured, the difference between 400 and 1,000+ calls per second).

Code the guest generates outside its image (a JIT, a loaded program) is not
watched: restore with flush=True after running such code.
"""
from __future__ import annotations

from unicorn import UC_HOOK_MEM_WRITE, Uc


class CodeCache:
    def __init__(self, uc: Uc) -> None:
        self.uc = uc
        self.code_written = False
        self.flushes = 0
        self._watched: list[tuple[int, int]] = []

    def watch(self, start: int, end: int) -> None:
        """Watch guest writes to [start, end) (virtual addresses of code)."""
        self._watched.append((start, end))
        self.uc.hook_add(UC_HOOK_MEM_WRITE, self._on_write, begin=start, end=end - 1)

    def _on_write(self, uc, access: int, address: int, size: int, value: int, _user) -> None:
        self.code_written = True

    def after_restore(self, *, flush: bool = False) -> None:
        if flush or self.code_written:
            self.uc.ctl_flush_tb()
            self.code_written = False
            self.flushes += 1
