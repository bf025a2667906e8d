"""Framing of gdb's remote serial protocol (gdb manual, appendix "Remote Protocol",
"Overview"): a packet is `$` data `#` two hex digits of the modulo-256 sum of data;
the receiver answers `+` (good) or `-` (resend). In data, `#`, `$`, `}` and `*` are
escaped as `}` followed by the byte XOR 0x20 (binary packets such as X), and a reply
may use run-length encoding (`*`), which gdb only sends towards us never. A bare
0x03 byte outside a packet is the user's Ctrl-C.
"""
from __future__ import annotations

from dataclasses import dataclass

INTERRUPT = 0x03
ESCAPE = 0x7D
ESCAPED = frozenset(b"#$}*")
CHECKSUM_DIGITS = 2


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte in ESCAPED:
            out += bytes([ESCAPE, byte ^ 0x20])
        else:
            out.append(byte)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == ESCAPE:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """A packet ready to send: payload escaped, with its checksum."""
    body = escape(payload)
    return b"$" + body + b"#" + f"{checksum(body):02x}".encode()


@dataclass
class Received:
    kind: str                 # "packet", "interrupt", "ack", "nak", "bad" (checksum mismatch)
    payload: bytes = b""      # a packet's data, unescaped


class PacketReader:
    """Splits a byte stream into packets, acknowledgements and interrupts. Bytes outside
    a packet other than `+`, `-` and 0x03 are line noise and dropped, as gdb does."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Received]:
        self._buffer += data
        events = []
        while self._buffer:
            first = self._buffer[0]
            if first == ord("$"):
                end = self._buffer.find(b"#")
                if end < 0 or len(self._buffer) < end + 1 + CHECKSUM_DIGITS:
                    break                                   # the rest has not arrived yet
                body = bytes(self._buffer[1:end])
                digits = bytes(self._buffer[end + 1:end + 1 + CHECKSUM_DIGITS])
                del self._buffer[:end + 1 + CHECKSUM_DIGITS]
                try:
                    good = int(digits, 16) == checksum(body)
                except ValueError:
                    good = False
                events.append(Received("packet", unescape(body)) if good else Received("bad"))
            else:
                del self._buffer[0]
                if first == INTERRUPT:
                    events.append(Received("interrupt"))
                elif first == ord("+"):
                    events.append(Received("ack"))
                elif first == ord("-"):
                    events.append(Received("nak"))
        return events
