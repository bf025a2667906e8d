"""Exact profiles of guest code: instructions per function, per calling context and
per source line, counted (not sampled) by a C block hook (cpu/_profile.c)."""
