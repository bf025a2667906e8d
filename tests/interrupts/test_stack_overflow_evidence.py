"""The stack-overflow checker on page-table evidence alone (a guard page below
a stack), and its refusal to call a higher-half stack an overflow."""
from __future__ import annotations

from types import SimpleNamespace

from interrupts.harness import NP_PAGE, Gate, IdtGuest, run_long
from unikernel_sim.diagnostics.checkers import stack_overflow
from unikernel_sim.diagnostics.report import build_report

GUARD_TOP = NP_PAGE + 0x1000          # the writable page above the not-present one is the "stack"


def test_a_push_into_an_unmapped_page_below_the_stack_is_an_overflow_without_symbols(tmp_path):
    guest = IdtGuest(before=f"mov rsp, {GUARD_TOP + 8:#x}", fault="push rax\npush rax",
                     gates={14: Gate(ist=1), 8: Gate(ist=1)})
    frame, _, result = run_long(guest, tmp_path)
    assert frame is not None and frame.vector == 14
    report = build_report(result.machine, result.stop)
    hints = [h for h in report.hints if h.checker == "stack-overflow"]
    assert hints, report.hint_messages
    assert f"in the unmapped page just below the stack that ends at {GUARD_TOP:#x}" in hints[0].message
    assert result.machine.symbols is None or result.machine.symbols.address_of("boot_stack_bottom") is None


def _evidence(rsp: int, bottom: int, top: int, fault=None):
    symbols = SimpleNamespace(address_of=lambda name: {"boot_stack_bottom": bottom, "boot_stack_top": top}.get(name))
    machine = SimpleNamespace(symbols=symbols, translate=lambda address: SimpleNamespace(physical=None, writable=False))
    return SimpleNamespace(machine=machine, registers={"rsp": rsp, "rip": 0x1000}, page_fault=fault,
                           fault_rip=None, where=lambda address: f"{address:#x}")


def test_a_higher_half_stack_is_not_below_a_low_stack_symbol():
    # RSP 0xffffffff80113fd8 with boot_stack_bottom at its load address 0x101f00: was
    # "stack overflow: ... 2147409960 bytes below boot_stack_bottom"
    evidence = _evidence(0xFFFF_FFFF_8011_3FD8, 0x101F00, 0x111F00)
    assert stack_overflow.check(evidence) is None


def test_rsp_below_the_stack_symbol_or_wrapped_past_zero_is_an_overflow():
    assert "48 bytes below boot_stack_bottom" in stack_overflow.check(_evidence(0x101F00 - 48, 0x101F00, 0x111F00)).message
    wrapped = stack_overflow.check(_evidence((1 << 64) - 0x640, 0x101F00, 0x111F00))
    assert wrapped is not None and f"{0x101F00 + 0x640} bytes below" in wrapped.message


def test_an_unmapped_higher_half_address_is_not_called_outside_ram(tmp_path):
    guest = IdtGuest(before="mov rax, 0xffffff800034b110", fault="mov qword ptr [rax], 1")
    frame, _, result = run_long(guest, tmp_path)
    assert frame is not None and frame.vector == 14
    report = build_report(result.machine, result.stop)
    assert not any(h.checker == "outside-ram" for h in report.hints), report.hint_messages
