"""Timing a short action: what the per-call benches share (guest_call_costs.py,
dirty_page_snapshots.py)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def per_call_us(action: Callable[[], object], calls: int, batches: int) -> float:
    """Median over `batches` of the microseconds one call of action takes in a batch of
    `calls`, after a tenth of a batch to warm the translation cache."""
    for _ in range(calls // 10):
        action()
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            action()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)
