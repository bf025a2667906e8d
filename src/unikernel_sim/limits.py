"""Ranges of the numbers a user can give (CLI options and the Python API alike)."""
from __future__ import annotations

MAX_TIMEOUT_SECONDS = 365 * 24 * 3600   # a year: far beyond any run, far below the host timer's limits
MAX_INSTRUCTIONS = (1 << 63) - 1         # the C clock counts in 64 bits, budget end included
MAX_TSC_MHZ = 100_000
MAX_GUEST_STEPS = (1 << 31) - 1          # TinyLlama positions: the guest keeps them in an int
MAX_TEMPERATURE = 100.0
