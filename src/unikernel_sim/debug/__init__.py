"""Debugging a guest from outside: the GDB remote stub (gdbstub.py)."""
