"""Symbols, source lines, disassembly, backtraces and crash reports."""
