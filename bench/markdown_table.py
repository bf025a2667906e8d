"""The Markdown table every bench prints: docs/performance.md quotes them as printed."""
from __future__ import annotations

from typing import Iterable, Sequence


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A header line, the separator, then one line per row. Cells are printed as given
    (format numbers before), so each bench keeps its own units and precision; a row is
    printed as soon as the iterable yields it (a slow bench shows its progress)."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)
