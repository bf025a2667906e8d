"""--expect: the smoke-boot check. The run stops as soon as the console output
matches, so a kernel that idles forever after its banner still passes fast."""
from __future__ import annotations

import re

from unikernel_sim.errors import UsageError

SEARCH_WINDOW = 64 * 1024   # bytes of recent output searched at each newline
NEWLINE = 0x0A


class ExpectWatcher:
    def __init__(self, pattern: str, on_match) -> None:
        try:
            self.regex = re.compile(pattern.encode("utf-8"), re.MULTILINE)
        except re.error as error:
            raise UsageError(f"invalid regular expression {pattern!r}: {error}", where="--expect") from None
        self.on_match = on_match
        self.matched = False
        self._buffer = bytearray()

    def __call__(self, byte: int) -> None:
        self._buffer.append(byte)
        if byte == NEWLINE and not self.matched:
            self.check()

    def write_chunk(self, chunk: bytes) -> None:
        self._buffer += chunk
        if NEWLINE in chunk and not self.matched:
            self.check()

    def check(self) -> bool:
        matched = self._check()
        if len(self._buffer) > 2 * SEARCH_WINDOW:      # keep memory bounded in a flood
            self._buffer = self._buffer[-SEARCH_WINDOW:]   # a copy: del would keep the memory
        return matched

    def _check(self) -> bool:
        if not self.matched and self.regex.search(self._buffer[-SEARCH_WINDOW:]):
            self.matched = True
            self.on_match()
        return self.matched
