"""Records of a run: why it ended (Stop, with its exit code), the exceptions on the
way (FaultStep), and the last exception the CPU raised (ExceptionRecord)."""
from __future__ import annotations

import enum

from unikernel_sim.exit_codes import ExitCode
from unikernel_sim.records import Record, record_equal, record_repr


class StopReason(enum.Enum):
    HALT = "halt"                    # hlt with IF clear (or no interrupt source left)
    GUEST_EXIT = "guest-exit"        # the guest wrote to the debug-exit port
    TIMEOUT = "timeout"              # wall-clock limit
    BUDGET = "budget"                # instruction limit
    EXCEPTION = "exception"          # a CPU exception the kernel cannot handle
    TRIPLE_FAULT = "triple-fault"
    OUTSIDE_RAM = "outside-ram"      # access to physical memory that does not exist
    PANIC = "panic"                  # the guest called its panic function
    STRICT_IO = "strict-io"          # --strict-io and a port with no device
    INTERRUPTED = "interrupted"      # Ctrl-C
    TERMINATED = "terminated"        # SIGTERM
    HANGUP = "hangup"                # SIGHUP
    OUTPUT_FAILED = "output-failed"  # an output the user asked for could not be written
    RETURNED = "returned"            # a guest call returned to its sentinel
    EXPECT_MATCHED = "expect-matched"  # --expect found its pattern in the output
    RESET = "reset"                  # the guest asked for a system reset (8042 pulse)
    BREAKPOINT = "breakpoint"        # execution reached an address the host asked to stop at
    POWER_OFF = "power-off"          # ACPI soft power-off (SLP_EN), as kernels do under QEMU
    STEP = "step"                    # one instruction executed, as asked (Machine.step, gdb's `s`)
    WATCHPOINT = "watchpoint"        # a watched memory range was written or read (gdb's Z2-Z4)


EXIT_CODES = {
    StopReason.HALT: ExitCode.OK,
    StopReason.TIMEOUT: ExitCode.TIMEOUT,
    StopReason.BUDGET: ExitCode.BUDGET,
    StopReason.EXCEPTION: ExitCode.CRASH,
    StopReason.TRIPLE_FAULT: ExitCode.CRASH,
    StopReason.OUTSIDE_RAM: ExitCode.CRASH,
    StopReason.PANIC: ExitCode.CRASH,
    StopReason.STRICT_IO: ExitCode.STRICT_IO,
    StopReason.INTERRUPTED: ExitCode.INTERRUPTED,
    StopReason.TERMINATED: ExitCode.TERMINATED,
    StopReason.HANGUP: ExitCode.HANGUP,
    StopReason.OUTPUT_FAILED: ExitCode.OUTPUT_FAILED,
    StopReason.RETURNED: ExitCode.OK,
    StopReason.EXPECT_MATCHED: ExitCode.OK,
    StopReason.RESET: ExitCode.OK,
    StopReason.BREAKPOINT: ExitCode.OK,
    StopReason.POWER_OFF: ExitCode.OK,
    StopReason.STEP: ExitCode.OK,
    StopReason.WATCHPOINT: ExitCode.OK,
}

ABNORMAL = frozenset({
    StopReason.TIMEOUT, StopReason.BUDGET, StopReason.EXCEPTION, StopReason.TRIPLE_FAULT,
    StopReason.OUTSIDE_RAM, StopReason.PANIC, StopReason.STRICT_IO, StopReason.INTERRUPTED,
    StopReason.TERMINATED, StopReason.HANGUP, StopReason.OUTPUT_FAILED,
})


class FaultStep(Record):
    """One exception on the way to a stop (a chain ends in a triple fault)."""

    vector: int
    error_code: int | None
    rip: int
    where: str                         # symbol+offset
    cr2: int | None = None


class ExceptionRecord(Record):
    """The latest exception the CPU raised (not an IRQ), with the registers as they
    were at the faulting instruction: a report written after the guest's own handler
    ran (and panicked) still shows and unwinds from the fault."""

    vector: int
    error_code: int | None
    rip: int                           # the saved RIP: the faulting instruction, or after INT n
    cr2: int | None                    # #PF only
    registers: dict[str, int]          # general-purpose registers and rip at the fault
    word_below_rsp: int | None = None  # what a `ret` into nowhere popped (None: unmapped)
    last_return: int | None = None     # the latest watched `ret` (--check-returns)


class Stop:
    """Why a run ended, with where and the fault chain when there is one."""

    def __init__(self, reason: StopReason, summary: str, rip: int = 0, where: str = "",
                 exit_value: int | None = None, vector: int | None = None, fault_address: int | None = None,
                 chain: list[FaultStep] | None = None) -> None:
        self.reason = reason
        self.summary = summary                 # one line, what happened
        self.rip = rip
        self.where = where                     # symbol+offset of rip
        self.exit_value = exit_value           # what the guest wrote to the debug-exit port
        self.vector = vector
        self.fault_address = fault_address     # CR2, or the unmapped physical address
        self.chain: list[FaultStep] = [] if chain is None else chain

    def __repr__(self) -> str:
        return record_repr(self)

    def __eq__(self, other: object) -> bool:
        return record_equal(self, other)

    @property
    def abnormal(self) -> bool:
        return self.reason in ABNORMAL
