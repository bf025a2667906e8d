"""PS/2 scancode set 1 (the set the i8042 hands the CPU with translation on):
make codes for typing text and named keys; break code = make | 0x80, with the
0xE0 prefix repeated for extended keys."""
from __future__ import annotations

LEFT_SHIFT = 0x2A
EXTENDED = 0xE0

_UNSHIFTED = {
    "1": 0x02, "2": 0x03, "3": 0x04, "4": 0x05, "5": 0x06, "6": 0x07, "7": 0x08, "8": 0x09, "9": 0x0A,
    "0": 0x0B, "-": 0x0C, "=": 0x0D, "\b": 0x0E, "\t": 0x0F,
    "q": 0x10, "w": 0x11, "e": 0x12, "r": 0x13, "t": 0x14, "y": 0x15, "u": 0x16, "i": 0x17, "o": 0x18,
    "p": 0x19, "[": 0x1A, "]": 0x1B, "\n": 0x1C, "a": 0x1E, "s": 0x1F, "d": 0x20, "f": 0x21, "g": 0x22,
    "h": 0x23, "j": 0x24, "k": 0x25, "l": 0x26, ";": 0x27, "'": 0x28, "`": 0x29, "\\": 0x2B,
    "z": 0x2C, "x": 0x2D, "c": 0x2E, "v": 0x2F, "b": 0x30, "n": 0x31, "m": 0x32, ",": 0x33, ".": 0x34,
    "/": 0x35, " ": 0x39,
}
_SHIFTED = {
    "!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8", "(": "9", ")": "0",
    "_": "-", "+": "=", "{": "[", "}": "]", ":": ";", '"': "'", "~": "`", "|": "\\", "<": ",", ">": ".",
    "?": "/",
}
NAMED_KEYS = {
    "esc": (0x01,), "enter": (0x1C,), "backspace": (0x0E,), "tab": (0x0F,), "space": (0x39,),
    "lshift": (0x2A,), "rshift": (0x36,), "lctrl": (0x1D,), "lalt": (0x38,), "capslock": (0x3A,),
    "f1": (0x3B,), "f2": (0x3C,), "f3": (0x3D,), "f4": (0x3E,), "f5": (0x3F,), "f6": (0x40,),
    "f7": (0x41,), "f8": (0x42,), "f9": (0x43,), "f10": (0x44,), "f11": (0x57,), "f12": (0x58,),
    "up": (EXTENDED, 0x48), "down": (EXTENDED, 0x50), "left": (EXTENDED, 0x4B), "right": (EXTENDED, 0x4D),
    "home": (EXTENDED, 0x47), "end": (EXTENDED, 0x4F), "pageup": (EXTENDED, 0x49),
    "pagedown": (EXTENDED, 0x51), "insert": (EXTENDED, 0x52), "delete": (EXTENDED, 0x53),
    "rctrl": (EXTENDED, 0x1D), "ralt": (EXTENDED, 0x38),
}


def key_press(make: tuple[int, ...]) -> list[int]:
    """Make then break bytes for one key."""
    if make[0] == EXTENDED:
        return [EXTENDED, make[1], EXTENDED, make[1] | 0x80]
    return [make[0], make[0] | 0x80]


def char_scancodes(ch: str) -> list[int]:
    """Set-1 bytes that type ch on a US keyboard (shift held for upper case and symbols)."""
    if ch in _UNSHIFTED:
        return key_press((_UNSHIFTED[ch],))
    base = ch.lower() if ch.isalpha() else _SHIFTED.get(ch)
    if base is None or base not in _UNSHIFTED:
        raise ValueError(f"no US-keyboard key types {ch!r}")
    return [LEFT_SHIFT] + key_press((_UNSHIFTED[base],)) + [LEFT_SHIFT | 0x80]


def text_scancodes(text: str) -> list[int]:
    """Scancodes for text; ``{name}`` types a named key (``{enter}``, ``{up}``, ``{f1}``)
    and ``{{`` a literal brace. An unknown ``{name}`` is a ValueError rather than
    literal text: a misspelt key name typed as characters would send the guest
    keystrokes nobody asked for."""
    out: list[int] = []
    i = 0
    while i < len(text):
        if text.startswith("{{", i):
            out += char_scancodes("{")
            i += 2
            continue
        if text[i] == "{" and "}" in text[i:]:
            end = text.index("}", i)
            name = text[i + 1:end].lower()
            if name not in NAMED_KEYS:
                raise ValueError(f"unknown key name {{{name}}}; named keys: {', '.join(NAMED_KEYS)}; "
                                 "type a literal brace as {{")
            out += key_press(NAMED_KEYS[name])
            i = end + 1
            continue
        out += char_scancodes(text[i])
        i += 1
    return out
