"""Port I/O hooks, with COM1's hot pair (LSR reads, THR writes) and port 0x61 reads
(the PIT calibration's poll) served in C.

All port instructions reach native hooks (_fast_ports.c). While the UART says
its state is plain (FastPorts.publish_uart), an LSR read and a THR write never
leave C: the byte goes into a buffer that drain() hands to ``on_bytes`` in
chunks. Everything else calls the Python handlers given here, after draining,
so host output keeps the guest's order. A serial flood went from ~0.4 MB/s to
what docs/performance.md records.

An exception in a Python handler cannot propagate through C: it is kept,
the guest is stopped, and the run loop re-raises it (``take_error``).
"""
from __future__ import annotations

import ctypes
from typing import Callable

from unicorn import UC_HOOK_INSN, Uc
from unicorn.x86_const import UC_X86_INS_IN, UC_X86_INS_OUT

from unikernel_sim.cpu.native import check_mirror, library
from unikernel_sim.cpu.unicorn_compat import add_native_hook
from unikernel_sim.cpu.vclock import VClockState, VirtualClock

NEVER = (1 << 64) - 1
BUFFER_BYTES = 64 * 1024

_IN_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_void_p)
_OUT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p)
_FLUSH_FN = ctypes.CFUNCTYPE(None)


class FastPortsState(ctypes.Structure):
    """Mirror of ``struct fast_ports`` in _fast_ports.c."""

    _fields_ = [
        ("clock", ctypes.POINTER(VClockState)),
        ("thr_port", ctypes.c_uint64),
        ("lsr_port", ctypes.c_uint64),
        ("tx_ok", ctypes.c_uint64),
        ("lsr_ok", ctypes.c_uint64),
        ("lsr_value", ctypes.c_uint64),
        ("io_ns", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("capacity", ctypes.c_uint64),
        ("buffer", ctypes.c_void_p),
        ("slow_in", _IN_FN),
        ("slow_out", _OUT_FN),
        ("flush", _FLUSH_FN),
        ("fast_accesses", ctypes.c_uint64),
        ("port_b", ctypes.c_uint64),
        ("port_b_ok", ctypes.c_uint64),
        ("port_b_value", ctypes.c_uint64),
        ("port_b_since_ns", ctypes.c_uint64),
        ("port_b_until_ns", ctypes.c_uint64),
        ("refresh_period_ns", ctypes.c_uint64),
    ]


_lib = library
check_mirror(FastPortsState, "_fast_ports.c's struct fast_ports", "fast_ports_struct_size")
_IN_HOOK = ctypes.cast(_lib.fast_ports_in, ctypes.c_void_p)
_OUT_HOOK = ctypes.cast(_lib.fast_ports_out, ctypes.c_void_p)


class FastPorts:
    def __init__(self, uc: Uc, clock: VirtualClock, *, thr_port: int, lsr_port: int, io_ns: int,
                 port_b: int, refresh_period_ns: int,
                 slow_in: Callable[[int, int], int], slow_out: Callable[[int, int, int], None],
                 on_bytes: Callable[[bytes], None], on_error: Callable[[], None]) -> None:
        self._slow_in, self._slow_out = slow_in, slow_out
        self.on_bytes = on_bytes
        self.on_error = on_error
        self._error: BaseException | None = None
        self._buffer = ctypes.create_string_buffer(BUFFER_BYTES)
        s = self.state = FastPortsState()
        s.clock = clock._pointer
        s.thr_port, s.lsr_port, s.io_ns = thr_port, lsr_port, io_ns
        s.port_b, s.refresh_period_ns = port_b, refresh_period_ns
        s.capacity = BUFFER_BYTES
        s.buffer = ctypes.cast(self._buffer, ctypes.c_void_p)
        # the callbacks must outlive the hooks: kept on self
        self._callbacks = (_IN_FN(self._in), _OUT_FN(self._out), _FLUSH_FN(self.drain))
        s.slow_in, s.slow_out, s.flush = self._callbacks
        user = ctypes.cast(ctypes.pointer(s), ctypes.c_void_p)
        self._user = user
        add_native_hook(uc, UC_HOOK_INSN, _IN_HOOK, user, 1, 0, UC_X86_INS_IN)
        add_native_hook(uc, UC_HOOK_INSN, _OUT_HOOK, user, 1, 0, UC_X86_INS_OUT)
        self.enabled = True

    # --- what the UART and the run loop tell us ------------------------------------------
    def publish_uart(self, tx_plain: bool, lsr_value: int | None) -> None:
        """tx_plain: a THR write only transmits; lsr_value: what an LSR read returns
        with no side effect, or None when a read has one (data received, line error)."""
        s = self.state
        s.tx_ok = int(tx_plain and self.enabled)
        s.lsr_ok = int(lsr_value is not None and self.enabled)
        s.lsr_value = lsr_value or 0

    def publish_port_b(self, value: int | None, since_ns: int, until_ns: int | None) -> None:
        """value: what a port 0x61 read returns, the refresh bit aside (the C path adds it
        from the time of the read), at every virtual ns in [since_ns, until_ns) (None: no
        end) while no port write comes between; None: nothing known."""
        s = self.state
        s.port_b_ok = int(value is not None and self.enabled)
        s.port_b_value = value or 0
        s.port_b_since_ns = since_ns
        s.port_b_until_ns = NEVER if until_ns is None else until_ns

    def disable(self) -> None:
        """Send every access through Python (--trace io wants to see them all)."""
        self.enabled = False
        self.state.tx_ok = self.state.lsr_ok = self.state.port_b_ok = 0

    @property
    def length_address(self) -> int:
        """Where the buffered byte count lives (the host timer's output watch reads it)."""
        return ctypes.addressof(self.state) + FastPortsState.length.offset

    @property
    def fast_accesses(self) -> int:
        return self.state.fast_accesses

    # --- buffered output ---------------------------------------------------------------
    def drain(self) -> None:
        """Hand the buffered THR bytes to on_bytes (also called from C when full)."""
        length = self.state.length
        if length:
            data = self._buffer.raw[:length]
            self.state.length = 0
            self.guarded(self.on_bytes, data)

    def take_error(self) -> BaseException | None:
        error, self._error = self._error, None
        return error

    # --- the Python path ------------------------------------------------------------------
    def _in(self, _uc, port: int, size: int, _user) -> int:
        self.drain()
        value = self.guarded(self._slow_in, port, size)
        return 0 if value is None else value

    def _out(self, _uc, port: int, size: int, value: int, _user) -> None:
        self.drain()
        self.guarded(self._slow_out, port, size, value)

    def guarded(self, function, *args):
        """function(*args) from a C hook: an exception is kept for the run loop (take_error)
        and the guest stopped, since it cannot cross the C frame."""
        try:
            return function(*args)
        except BaseException as error:  # noqa: BLE001 - cannot cross the C frame; re-raised by the run loop
            if self._error is None:
                self._error = error
            self.on_error()
            return None
