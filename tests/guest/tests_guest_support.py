"""Helpers shared by the guest suites (importable from hypothesis-driven tests)."""
from __future__ import annotations

PIT_INPUT_HZ = 1_193_182
STORM_DIVISOR = 2


def storm_from(booted):
    machine = booted.fresh()
    assert machine.call("pit_init", PIT_INPUT_HZ // STORM_DIVISOR) == 0
    return machine
