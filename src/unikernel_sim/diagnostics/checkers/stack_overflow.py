"""Stack overflow, from two kinds of evidence.

A guard page: a page fault whose address lies within a page of RSP, in a page
that cannot be written (not present, or read-only), directly below a writable
mapped page - the stack the push came from. This needs no symbol names.

The kernel's stack symbols (boot_stack_bottom/top or stack_bottom/top) for
kernels with no guard page (an identity map has none): RSP, or the faulting
address, lies below the bottom symbol by at most MAX_BELOW_SYMBOL. The
comparison is plain arithmetic, not modulo 2^64 (a higher-half RSP compared
with a low load-address symbol is another address space, not an overflow),
except for an RSP that ran down past zero and wrapped to the top few MiB.
"""
from __future__ import annotations

from unikernel_sim.arch import PageFaultError
from unikernel_sim.diagnostics.checkers import Hint

STACK_SYMBOLS = (("boot_stack_bottom", "boot_stack_top"), ("stack_bottom", "stack_top"))
NEAR = 4096                     # a push, or a frame's first store, lands this close to RSP
MAX_BELOW_SYMBOL = 1 << 20      # further below the bottom symbol than this is another stack
PAGE = 4096
ADDRESS_SPACE = 1 << 64


def check(evidence) -> Hint | None:
    return _guard_page(evidence) or _below_stack_symbol(evidence)


def _guard_page(evidence) -> Hint | None:
    fault = evidence.page_fault
    if fault is None:
        return None
    address, error, rip = fault
    rsp = evidence.registers["rsp"]
    if not rsp - NEAR <= address <= rsp:
        return None
    machine = evidence.machine
    walk = machine.translate(address)
    writable_here = walk.physical is not None and walk.writable
    if writable_here or (walk.physical is not None and not error & PageFaultError.W):
        return None                              # a usable page: this fault is about something else
    above = (address & ~(PAGE - 1)) + PAGE
    if above >= ADDRESS_SPACE:
        return None                              # RSP wrapped past zero: the symbol check tells that one
    stack = machine.translate(above)
    if stack.physical is None or not stack.writable:
        return None
    where = evidence.where(rip)
    return Hint("stack-overflow",
                f"stack overflow: {where} touched {address:#x}, {rsp - address} bytes below RSP {rsp:#x}, in the "
                f"{'unmapped' if walk.physical is None else 'read-only'} page just below the stack that ends "
                f"at {above:#x}", where)


def _below_stack_symbol(evidence) -> Hint | None:
    symbols = evidence.machine.symbols
    if symbols is None:
        return None
    for bottom_name, top_name in STACK_SYMBOLS:
        bottom, top = symbols.address_of(bottom_name), symbols.address_of(top_name)
        if bottom is not None and top is not None and bottom < top:
            break
    else:
        return None
    rsp = evidence.registers["rsp"]
    fault = evidence.page_fault
    lowest = rsp
    if fault and 0 < bottom - fault[0] <= NEAR and fault[0] < rsp:
        lowest = fault[0]                                # the push below the bottom that faulted
    below, limit = bottom - lowest, MAX_BELOW_SYMBOL
    if lowest > bottom and ADDRESS_SPACE - lowest <= MAX_BELOW_SYMBOL:
        below = bottom + (ADDRESS_SPACE - lowest)        # RSP ran down past address zero and wrapped
        limit = MAX_BELOW_SYMBOL + bottom
    if not 0 < below <= limit:
        return None            # on the stack, above it, or far away (the loader's stack before the kernel
        #                        set its own, another stack, another address space)
    where = evidence.where(evidence.fault_rip or evidence.registers["rip"])
    return Hint("stack-overflow",
                f"stack overflow: RSP {rsp:#x} is {below} bytes below {bottom_name} ({bottom:#x}); "
                f"the stack is {top - bottom} bytes", where)
