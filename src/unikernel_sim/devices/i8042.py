"""Intel 8042 keyboard controller with a PS/2 keyboard on its first port.

Status (read 0x64): bit 0 output buffer full, 1 input buffer full (always 0:
commands complete at once), 2 system flag, 3 last write was a command,
4 keyboard not inhibited, 5 output from the second (aux) port.

Controller commands (write 0x64): 0x20 read configuration byte, 0x60 write it,
0xA7/0xA8 disable/enable port 2, 0xA9 test port 2, 0xAA self-test (-> 0x55),
0xAB test port 1 (-> 0x00), 0xAD/0xAE disable/enable port 1, 0xD0/0xD1 read/write
the output port, 0xD2 write the keyboard output buffer, 0xFE pulse reset.

Configuration byte: bit 0 IRQ 1 on keyboard data, 1 IRQ 12, 2 system flag,
4 port 1 clock disabled, 5 port 2 clock disabled, 6 set 2 -> set 1 translation.

Keyboard commands (write 0x60): 0xFF reset (0xFA 0xAA), 0xF4/0xF5 enable/disable
scanning, 0xF2 identify (0xFA 0xAB 0x83), 0xF0 scancode set, 0xED LEDs,
0xF3 typematic, 0xEE echo, 0xF6 defaults; anything else -> 0xFE (resend).

A PS/2 mouse sits on the second port, as on QEMU's PC: 0xD4 sends it a byte, 0xD3 puts a
byte in the output buffer as if it came from it; its replies carry status bit 5 and raise
IRQ 12 when configuration bit 1 is set. It answers the command set a driver uses at
initialisation (0xFF reset -> 0xFA 0xAA 0x00, 0xF2 identify -> 0xFA 0x00, 0xF4/0xF5 enable/
disable reporting, 0xF6 defaults, 0xF3 sample rate and 0xE8 resolution with their data byte,
0xE6/0xE7 scaling, 0xEA stream mode, 0xE9 status -> 0xFA + 3 bytes); it never moves.

Typed keys become available one byte at a time, ``key_interval_ns`` of virtual
time apart and no sooner than ``keys_start_ns`` after power-on, so a driver
that flushes the buffer during initialisation does not eat them.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

DATA_PORT = 0x60
STATUS_PORT = 0x64
STATUS_OUTPUT_FULL = 0x01
STATUS_SYSTEM = 0x04
STATUS_COMMAND = 0x08
STATUS_UNLOCKED = 0x10
STATUS_AUX_DATA = 0x20
CONFIG_IRQ1 = 0x01
CONFIG_IRQ12 = 0x02
CONFIG_SYSTEM = 0x04
CONFIG_PORT1_DISABLED = 0x10
CONFIG_PORT2_DISABLED = 0x20
CONFIG_TRANSLATE = 0x40
CONFIG_POWER_ON = CONFIG_IRQ1 | CONFIG_SYSTEM | CONFIG_PORT2_DISABLED | CONFIG_TRANSLATE
OUTPUT_PORT_RESET = 0x01            # active low: 0 resets the CPU
OUTPUT_PORT_A20 = 0x02
SELF_TEST_OK = 0x55
INTERFACE_OK = 0x00
ACK = 0xFA
RESEND = 0xFE
BAT_OK = 0xAA
ECHO = 0xEE
KEYBOARD_ID = (0xAB, 0x83)
MOUSE_ID = 0x00                      # a standard PS/2 mouse
MOUSE_DEFAULT_SAMPLE_RATE = 100
MOUSE_DEFAULT_RESOLUTION = 2         # 4 counts/mm
MOUSE_STATUS_REPORTING = 0x20
DEFAULT_KEYS_START_NS = 50_000_000   # 50 ms after power-on
DEFAULT_KEY_INTERVAL_NS = 1_000_000  # one byte per millisecond


class I8042(Device):
    name = "i8042"
    ports = (PortRange(DATA_PORT), PortRange(STATUS_PORT))
    irq_lines = (1,)
    saved_fields = ("config", "output_port", "output", "typed", "next_key_at", "obf", "last_was_command",
                    "pending_command", "pending_keyboard", "scanning", "scancode_set", "leds", "last_read",
                    "aux_output", "obf_aux", "pending_mouse", "mouse_reporting", "mouse_sample_rate",
                    "mouse_resolution")

    def __init__(self, now: Callable[[], int], irq1: Callable[[], None], reset: Callable[[], None],
                 keys_start_ns: int = DEFAULT_KEYS_START_NS,
                 key_interval_ns: int = DEFAULT_KEY_INTERVAL_NS,
                 irq12: Callable[[], None] = lambda: None) -> None:
        self.now = now
        self.irq1 = irq1
        self.irq12 = irq12
        self.request_reset = reset
        self.keys_start_ns = keys_start_ns
        self.key_interval_ns = key_interval_ns
        self.config = CONFIG_POWER_ON
        self.output_port = OUTPUT_PORT_RESET | OUTPUT_PORT_A20
        self.output: deque[int] = deque()   # controller/keyboard replies, ready now
        self.typed: deque[int] = deque()    # host keystrokes, released over time
        self.next_key_at = keys_start_ns
        self.obf: int | None = None         # the byte in the output buffer
        self.last_read = 0                  # what the data port returns when the buffer is empty
        self.aux_output: deque[int] = deque()   # mouse replies, ready now
        self.obf_aux = False                # the output buffer's byte came from the mouse
        self.pending_mouse: int | None = None   # mouse command awaiting its data byte
        self.mouse_reporting = False
        self.mouse_sample_rate = MOUSE_DEFAULT_SAMPLE_RATE
        self.mouse_resolution = MOUSE_DEFAULT_RESOLUTION
        self.last_was_command = False
        self.pending_command: int | None = None      # controller command awaiting its data byte
        self.pending_keyboard: int | None = None     # keyboard command awaiting its data byte
        self.scanning = True
        self.scancode_set = 2
        self.leds = 0

    # --- host side ------------------------------------------------------------------
    def type_bytes(self, scancodes: list[int]) -> None:
        self.typed.extend(scancodes)

    def next_event_ns(self) -> int | None:
        if self.typed and self.obf is None and self.scanning and not self.config & CONFIG_PORT1_DISABLED:
            return self.next_key_at
        return None

    def advance(self, now: int) -> None:
        self._fill(now)

    # --- output buffer ------------------------------------------------------------
    def _fill(self, now: int | None = None) -> None:
        if self.obf is not None:
            return
        if self.output:
            self.obf = self.output.popleft()
        elif self.aux_output:
            self.obf = self.aux_output.popleft()
            self.obf_aux = True
            if self.config & CONFIG_IRQ12:
                self.irq12()
            return
        elif (self.typed and self.scanning and not self.config & CONFIG_PORT1_DISABLED
              and (now if now is not None else self.now()) >= self.next_key_at):
            self.obf = self.typed.popleft()
        else:
            return
        if self.config & CONFIG_IRQ1:
            self.irq1()

    def _reply(self, *data: int) -> None:
        self.output.extend(data)
        self._fill()

    # --- I/O ----------------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if port == STATUS_PORT:
            self._fill()
            status = STATUS_SYSTEM | STATUS_UNLOCKED
            if self.obf is not None:
                status |= STATUS_OUTPUT_FULL
                if self.obf_aux:
                    status |= STATUS_AUX_DATA
            if self.last_was_command:
                status |= STATUS_COMMAND
            return status
        self._fill()
        # An empty output buffer reads back the byte last read (the 8042 data register keeps it,
        # and QEMU does the same): an IRQ 1 handler that took the self-test reply before the
        # driver's poll leaves the driver reading 0x55 again, not 0.
        value = self.last_read if self.obf is None else self.obf
        self.last_read = value
        if self.obf is not None:
            was_key = not self.output and not self.obf_aux
            self.obf_aux = False
            self.obf = None
            if was_key:
                self.next_key_at = max(self.next_key_at, self.now()) + self.key_interval_ns
            self._fill()
            self.events_moved()                    # the next typed key is due at a new time
        return value

    def io_write(self, port: int, size: int, value: int) -> None:
        value &= 0xFF
        if port == STATUS_PORT:
            self.last_was_command = True
            self._controller_command(value)
        else:
            self.last_was_command = False
            if self.pending_command is not None:
                command, self.pending_command = self.pending_command, None
                self._controller_data(command, value)
            else:
                self._keyboard_command(value)
        self.events_moved()                        # scanning, the port or its IRQ may have changed

    def _controller_command(self, command: int) -> None:
        if command == 0x20:
            self._reply(self.config)
        elif command in (0x60, 0xD1, 0xD2, 0xD3, 0xD4):
            self.pending_command = command
        elif command == 0xA7:
            self.config |= CONFIG_PORT2_DISABLED
        elif command == 0xA8:
            self.config &= ~CONFIG_PORT2_DISABLED
        elif command in (0xA9, 0xAB):
            self._reply(INTERFACE_OK)
        elif command == 0xAA:
            self._reply(SELF_TEST_OK)
        elif command == 0xAD:
            self.config |= CONFIG_PORT1_DISABLED
        elif command == 0xAE:
            self.config &= ~CONFIG_PORT1_DISABLED
            self._fill()
        elif command == 0xD0:
            self._reply(self.output_port)
        elif command == 0xFE or (0xF0 <= command <= 0xFF and not command & OUTPUT_PORT_RESET):
            self.request_reset()

    def _controller_data(self, command: int, value: int) -> None:
        if command == 0x60:
            self.config = value
        elif command == 0xD1:
            self.output_port = value
            if not value & OUTPUT_PORT_RESET:
                self.request_reset()
        elif command == 0xD2:
            self._reply(value)
        elif command == 0xD3:
            self._aux_reply(value)
        elif command == 0xD4:
            self._mouse_command(value)

    # --- the PS/2 mouse on port 2 -------------------------------------------------------
    def _aux_reply(self, *data: int) -> None:
        self.aux_output.extend(data)
        self._fill()

    def _mouse_command(self, value: int) -> None:
        if self.pending_mouse is not None:
            command, self.pending_mouse = self.pending_mouse, None
            if command == 0xF3:
                self.mouse_sample_rate = value
            else:
                self.mouse_resolution = value & 3
            self._aux_reply(ACK)
            return
        if value in (0xF3, 0xE8):
            self.pending_mouse = value
            self._aux_reply(ACK)
        elif value == 0xFF:
            self._mouse_defaults()
            self._aux_reply(ACK, BAT_OK, MOUSE_ID)
        elif value == 0xF2:
            self._aux_reply(ACK, MOUSE_ID)
        elif value in (0xF4, 0xF5):
            self.mouse_reporting = value == 0xF4
            self._aux_reply(ACK)
        elif value == 0xF6:
            self._mouse_defaults()
            self._aux_reply(ACK)
        elif value == 0xE9:
            status = MOUSE_STATUS_REPORTING if self.mouse_reporting else 0
            self._aux_reply(ACK, status, self.mouse_resolution, self.mouse_sample_rate)
        elif value in (0xE6, 0xE7, 0xEA, 0xF0):
            self._aux_reply(ACK)
        else:
            self._aux_reply(RESEND)

    def _mouse_defaults(self) -> None:
        self.mouse_reporting = False
        self.mouse_sample_rate = MOUSE_DEFAULT_SAMPLE_RATE
        self.mouse_resolution = MOUSE_DEFAULT_RESOLUTION

    def _keyboard_command(self, value: int) -> None:
        if self.pending_keyboard is not None:
            command, self.pending_keyboard = self.pending_keyboard, None
            if command == 0xF0 and value == 0:
                self._reply(ACK, self.scancode_set)
                return
            if command == 0xF0:
                self.scancode_set = value
            elif command == 0xED:
                self.leds = value & 7
            self._reply(ACK)
            return
        if value in (0xED, 0xF0, 0xF3):
            self.pending_keyboard = value
            self._reply(ACK)
        elif value == 0xFF:
            self.scanning = True
            self._reply(ACK, BAT_OK)
        elif value == 0xF4:
            self.scanning = True
            self._reply(ACK)
        elif value == 0xF5:
            self.scanning = False
            self._reply(ACK)
        elif value == 0xF6:
            self._reply(ACK)
        elif value == 0xF2:
            self._reply(ACK, *KEYBOARD_ID)
        elif value == 0xEE:
            self._reply(ECHO)
        else:
            self._reply(RESEND)
