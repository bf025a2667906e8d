"""Root-cause checkers. Each looks at the evidence of one classic bare-metal
mistake and returns a Hint only when the evidence is there (a false positive
is a bug). They run in order; the first hint names the report's first line."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from unikernel_sim.diagnostics.report import Evidence


@dataclass
class Hint:
    checker: str
    message: str
    location: str | None = None


Checker = Callable[["Evidence"], "Hint | None"]


def all_checkers() -> list[Checker]:
    from unikernel_sim.diagnostics.checkers import (
        heap_exhaustion, idt, misaligned_sse, outside_mapping, red_zone, return_nowhere, sse_disabled,
        stack_overflow,
    )

    return [red_zone.check, heap_exhaustion.check, return_nowhere.check, stack_overflow.check,
            outside_mapping.check, sse_disabled.check, misaligned_sse.check, idt.check]
