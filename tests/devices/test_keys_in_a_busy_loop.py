"""Typed keys reach a kernel that spins in `while (1);` and takes them in its IRQ 1
handler (the shape of a popular tutorial kernel). Before the fix, the handler's data
read scheduled the next key but nothing re-armed the fast-mode deadline, so only
the first key's make code ever arrived (found with arjun024/mkeykernel)."""
from __future__ import annotations

import pytest

from interrupts.harness import COUNTER_SLOT, IdtGuest, build_protected
from unikernel_sim.run import boot

BUFFER = COUNTER_SLOT + 16
TYPED = "hello"
SCANCODES_SET1 = {"h": 0x23, "e": 0x12, "l": 0x26, "o": 0x18}     # make codes; break = make | 0x80
KEYBOARD_VECTOR = 0x09                                            # IRQ 1 at the BIOS's base 0x08


@pytest.mark.parametrize("deterministic", [False, True], ids=["fast", "deterministic"])
def test_every_typed_key_reaches_an_irq1_handler_while_the_kernel_spins(tmp_path, deterministic):
    expected = [code for key in TYPED for code in (SCANCODES_SET1[key], SCANCODES_SET1[key] | 0x80)]
    guest = IdtGuest(
        before="mov al, 0xfd\nout 0x21, al",                     # unmask IRQ 1 only
        fault="nop", flags=0x202,
        after=f"""
        spin:
            cmp dword ptr [{COUNTER_SLOT:#x}], {len(expected)}
            jb spin
            mov al, 0
            out 0xf4, al
        """,
        handlers={KEYBOARD_VECTOR: f"""
            push eax
            push ebx
            in al, 0x60
            mov ebx, [{COUNTER_SLOT:#x}]
            mov [{BUFFER:#x} + ebx], al
            inc dword ptr [{COUNTER_SLOT:#x}]
            mov al, 0x20
            out 0x20, al
            pop ebx
            pop eax
            iretd
        """})
    image, _ = build_protected(guest)
    path = tmp_path / "keys.bin"
    path.write_bytes(image)
    result = boot(str(path), keys=TYPED, timeout=20, deterministic=deterministic)
    assert result.stop.reason.value == "guest-exit", result.stop.summary
    assert list(result.machine.ram.read(BUFFER, len(expected))) == expected
