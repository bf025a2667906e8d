"""--keys scripts: keystrokes, and `{wait:TEXT}` to hold the rest back until the
guest has printed TEXT (on COM1, the 0xE9 console or the VGA text screen), so a
shell session can be typed at its prompts instead of into the boot code.

    "{wait:login: }root{enter}{wait:# }ls{enter}"
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from unikernel_sim.devices.scancodes import text_scancodes

WAIT_PREFIX = "{wait:"
SCREEN_POLL_NS = 10_000_000          # virtual time between looks at the VGA screen while a wait is pending


@dataclass
class KeyStep:
    scancodes: list[int]
    wait_for: str | None = None       # printed text that must appear before these keys


def parse_key_script(text: str) -> list[KeyStep]:
    """Steps of a --keys script; ValueError for an unknown key name or an unclosed wait."""
    steps: list[KeyStep] = []
    wait: str | None = None
    rest = text
    while True:
        start = rest.find(WAIT_PREFIX)
        chunk, rest = (rest, "") if start < 0 else (rest[:start], rest[start + len(WAIT_PREFIX):])
        if chunk or wait is not None:
            steps.append(KeyStep(text_scancodes(chunk), wait))
        if start < 0:
            return steps
        end = rest.find("}")
        if end < 0:
            raise ValueError(f"{WAIT_PREFIX}... has no closing brace")
        wait, rest = rest[:end], rest[end + 1:]
        if not wait:
            raise ValueError("{wait:} needs the text to wait for")


class KeyScript:
    """Releases each step's keys once its text has appeared (after the previous step).

    Text is noticed as output is drained (which, in a deterministic run, can happen at a
    host-timed stop) but keys are released only by release(), which the run loop calls
    at the start of a slice it did not stop on the host's schedule: so a deterministic
    run types at the same instruction every time."""

    def __init__(self, steps: list[KeyStep], type_bytes: Callable[[list[int]], None],
                 screen_text: Callable[[], str]) -> None:
        self.steps = list(steps)
        self.type_bytes = type_bytes
        self.screen_text = screen_text
        self._seen = ""                     # output since the current wait began
        self.next_poll_ns = SCREEN_POLL_NS  # virtual time of the next look at the screen
        self.release()

    @property
    def waiting_for(self) -> str | None:
        return self.steps[0].wait_for if self.steps else None

    def write_chunk(self, chunk: bytes) -> None:
        """A console listener (COM1 and 0xE9)."""
        wanted = self.waiting_for
        if wanted is None:
            return
        self._seen = (self._seen + chunk.decode("utf-8", errors="replace"))[-(4 * len(wanted) + 4096):]
        if wanted in self._seen:
            self._advance()

    def __call__(self, byte: int) -> None:
        self.write_chunk(bytes([byte]))

    def poll_screen(self, now_ns: int) -> None:
        """Called between slices (the run loop stops every SCREEN_POLL_NS of virtual time
        while a wait is pending): the prompt may be on the VGA screen only."""
        wanted = self.waiting_for
        if wanted is None or now_ns < self.next_poll_ns:
            return
        self.next_poll_ns = (now_ns // SCREEN_POLL_NS + 1) * SCREEN_POLL_NS     # fixed points: deterministic
        if wanted in self.screen_text():
            self._advance()

    def _advance(self) -> None:
        self.steps[0].wait_for = None       # seen; typed at the next release()
        self._seen = ""

    def release(self) -> None:
        """Type every step whose text has appeared, up to the next unmet wait."""
        while self.steps and self.steps[0].wait_for is None:
            self.type_bytes(self.steps.pop(0).scancodes)
