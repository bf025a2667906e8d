"""Where exceptions and interrupts enter the guest: Unicorn's hooks for CPU
exceptions and INT n, the invalid-opcode hook, faults raised by our own hooks,
and IRQs the run loop injects between slices. Each becomes an Event delivered
through the guest's IDT (cpu/delivery.py); a delivery that ends in a triple
fault stops the run with the whole chain.

Unicorn never uses the guest IDT and reports #UD and INT 6 through a different
hook than the other exceptions (docs/unicorn-quirks.md, Q3 and Q4).
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable

from unicorn import UC_HOOK_INSN_INVALID, UC_HOOK_INTR, Uc
from unicorn import x86_const as x86

from unikernel_sim.arch import OPCODE_INT_IMM8, Vector, short_name
from unikernel_sim.cpu.delivery import (
    KIND_EXCEPTION, KIND_EXTERNAL, KIND_SOFTWARE, DeliveryOutcome, Event, InterruptDelivery, error_code_for,
)
from unikernel_sim.cpu.engine import read_cpu_state
from unikernel_sim.cpu.fast_delivery import FastDelivery
from unikernel_sim.cpu.unicorn_compat import take_exception_info
from unikernel_sim.cpu.vclock import VirtualClock
from unikernel_sim.memory.guest_memory import GuestMemory
from unikernel_sim.stops import ExceptionRecord, FaultStep, Stop, StopReason

RECEIVED_HISTORY = 32                 # exceptions the report can list

if TYPE_CHECKING:
    from unikernel_sim.devices.board import PcBoard


class InterruptPath:
    def __init__(self, uc: Uc, memory: GuestMemory, clock: VirtualClock, *,
                 describe: Callable[[int], str], stop: Callable[[Stop], None]) -> None:
        self.uc = uc
        self.memory = memory
        self.clock = clock
        self.describe = describe
        self.stop = stop
        self.delivery = InterruptDelivery(uc, memory)
        self.fast = FastDelivery(uc, memory.ram.size, memory.ram.host_address)   # the common case in C; Python for the rest
        self.delivered_in_c = False                     # how the latest IRQ went in (fast.context has its stack)
        self.last_exception: ExceptionRecord | None = None
        # Exceptions delivered to the guest's own handlers, oldest first (the report lists
        # them: a #DF taken on an IST stack and handled by the guest is still evidence).
        self.received: deque[FaultStep] = deque(maxlen=RECEIVED_HISTORY)
        self.irq_count = 0
        self.trace = False
        self.log: list[tuple[int, str, int, int | None]] = []   # (ns, event, rip, instructions) when tracing
        self.pending_fault: Event | None = None
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_instruction)

    # --- from the run loop ------------------------------------------------------------
    def inject_pending_irq(self, board: "PcBoard") -> bool:
        """Deliver the interrupt controllers' request if the CPU accepts interrupts now:
        IF set, and not in the one-instruction shadow of STI / MOV SS (Q14; the request
        then waits for the next slice or for the `hlt` stop)."""
        if not board.interrupt_pending or not self.fast.ready():
            return False
        vector, _irq = board.acknowledge()
        self.irq_count += 1
        self.delivered_in_c = not self.trace and self.fast.deliver(vector)
        if not self.delivered_in_c:
            self.deliver(Event(vector, KIND_EXTERNAL, None, self.uc.reg_read(x86.UC_X86_REG_RIP)))
        return True

    def deliver_pending_fault(self) -> bool:
        """Deliver a fault one of our hooks raised (raise_fault); False if none."""
        if self.pending_fault is None:
            return False
        fault, self.pending_fault = self.pending_fault, None
        self.deliver(fault)
        return True

    def raise_fault(self, vector: int, error_code: int | None, rip: int) -> None:
        """From a hook: stop, then deliver a fault whose saved RIP is rip (the run loop
        delivers it, so whatever RIP Unicorn leaves behind does not matter)."""
        self.pending_fault = Event(vector, KIND_EXCEPTION, error_code, rip)
        self.clock.settle(rip, faulting=True)          # a faulting instruction counts as started
        self.clock.note_stop_request()
        self.uc.emu_stop()

    # --- delivery -----------------------------------------------------------------------
    def deliver(self, event: Event) -> DeliveryOutcome:
        if event.kind != KIND_EXTERNAL:
            self.last_exception = self._record(event)
        outcome = self.delivery.deliver(event)
        if event.kind != KIND_EXTERNAL:
            for step in outcome.steps:
                if step.event.kind == KIND_EXCEPTION:
                    self.received.append(FaultStep(step.event.vector, step.event.error_code, step.event.return_rip,
                                                   self.describe(step.event.return_rip), step.event.cr2))
        if self.trace:
            for step in outcome.steps:
                self.log.append((self.clock.now_ns(), step.event.label(), step.event.return_rip,
                                 self.clock.instructions if self.clock.counting else None))
        if outcome.triple_fault:
            self.stop(self._triple_fault_stop(outcome))
        return outcome

    def _record(self, event: Event) -> ExceptionRecord:
        """The exception and the registers where it happened, read before the frame
        is pushed: the word just below RSP is what a `ret` into nowhere popped."""
        registers = {**read_cpu_state(self.uc).gpr, "rip": event.return_rip}
        below = self.memory.read(registers["rsp"] - 8, 8)
        return ExceptionRecord(event.vector, event.error_code, event.return_rip, event.cr2, registers,
                               int.from_bytes(below, "little") if below else None, self.clock.last_return())

    def _triple_fault_stop(self, outcome: DeliveryOutcome) -> Stop:
        chain = [FaultStep(s.event.vector, s.event.error_code, s.event.return_rip,
                           self.describe(s.event.return_rip), s.event.cr2) for s in outcome.steps]
        last = outcome.steps[-1].event
        where = f" at {last.cr2:#x}" if last.cr2 is not None else ""
        summary = (f"triple fault: {short_name(last.vector)}{where} while delivering #DF; chain: "
                   + " -> ".join(s.event.label() for s in outcome.steps))
        rip = outcome.steps[0].event.return_rip
        return Stop(StopReason.TRIPLE_FAULT, summary, rip=rip, where=self.describe(rip),
                    vector=last.vector, fault_address=last.cr2, chain=chain)

    # --- Unicorn hooks --------------------------------------------------------------------
    def _on_interrupt(self, uc, vector: int, _user) -> None:
        """A CPU exception or INT n (Q3: the error code comes from the saved context)."""
        info = take_exception_info(uc)
        kind = KIND_SOFTWARE if info.software else KIND_EXCEPTION
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        self.clock.settle(rip, faulting=kind == KIND_EXCEPTION)     # the rest of the block does not run
        cr2 = uc.reg_read(x86.UC_X86_REG_CR2) if vector == Vector.PF and kind == KIND_EXCEPTION else None
        restart = self._software_interrupt_start(rip, vector) if kind == KIND_SOFTWARE else None
        self.deliver(Event(vector, kind, error_code_for(vector, kind, info.error_code), rip, cr2, restart))

    def _software_interrupt_start(self, rip: int, vector: int) -> int:
        """Address of the INT n / INT3 / INTO / INT1 that RIP has just passed."""
        before = self.memory.read(rip - 2, 2) or b"\0\0"
        if before[0] == OPCODE_INT_IMM8 and before[1] == vector:
            return rip - 2
        return rip - 1

    def _on_invalid_instruction(self, uc, _user) -> bool:
        """#UD, and a software `int 6` with RIP still at the INT (Q4)."""
        rip = uc.reg_read(x86.UC_X86_REG_RIP)
        self.clock.settle(rip, faulting=True)                       # the INT 6 or the undefined opcode
        if self.memory.read(rip, 2) == bytes([OPCODE_INT_IMM8, Vector.UD]):
            self.deliver(Event(Vector.UD, KIND_SOFTWARE, None, rip + 2, restart_rip=rip))
        else:
            self.deliver(Event(Vector.UD, KIND_EXCEPTION, None, rip))
        return True
