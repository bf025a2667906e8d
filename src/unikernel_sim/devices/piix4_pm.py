"""The PIIX4 power-management function (PCI 00:01.3) as QEMU's `pc` machine maps
it: the ACPI fixed hardware the FADT points at (ACPI 6.5 section 4.8), the SMI
command port that switches ACPI mode on, and the Bochs-era PM1a control port.

Register table (ports; the FADT's PM1a_EVT_BLK 0x600, PM1a_CNT_BLK 0x604,
PM_TMR_BLK 0x608, GPE0_BLK 0xAFE0, SMI_CMD 0xB2):

  0x600  PM1 status (write 1 to clear): bit 0 TMR_STS (timer bit 23 changed),
         5 GBL_STS, 8 PWRBTN_STS, 10 RTC_STS, 15 WAK_STS
  0x602  PM1 enable: bit 0 TMR_EN, 5 GBL_EN, 8 PWRBTN_EN, 10 RTC_EN
  0x604  PM1 control: bit 0 SCI_EN, bits 10-12 SLP_TYP, bit 13 SLP_EN (write-only:
         writing it powers off - QEMU's S5 and S4; S3 suspend is not emulated and
         ends the run the same way, the report line names the type)
  0x608  PM timer: 24-bit counter at 3.579545 MHz (section 4.8.3.3), read-only
  0xAFE0 GPE0 status (2 bytes, write 1 to clear), 0xAFE2 GPE0 enable (2 bytes)
  0xB2   SMI command: 0xF1 (ACPI_ENABLE) sets SCI_EN, 0xF0 (ACPI_DISABLE) clears it,
         as SeaBIOS's SMI handler does; 0xB3 a scratch status byte
  0xB004 PM1a control as Bochs and QEMU before 2.0 placed it (same register)

The SCI is ISA IRQ 9, level-triggered (the FADT's SCI_INT): asserted while SCI_EN is
set and a status bit is enabled. Recorded on QEMU 7.2 after SeaBIOS: status/enable/
control 0, 0, 0 (TMR_STS aside), control 1 after the ACPI-enable command, 35,824
timer ticks in 10 ms of PIT time.
"""
from __future__ import annotations

from typing import Callable

from unikernel_sim.devices.device import Device, PortRange

PM1_EVENT, PM1_ENABLE, PM1_CONTROL, PM_TIMER = 0x600, 0x602, 0x604, 0x608
BOCHS_PM1_CONTROL = 0xB004
GPE0_STATUS, GPE0_ENABLE = 0xAFE0, 0xAFE2
SMI_COMMAND, SMI_STATUS = 0xB2, 0xB3
ACPI_ENABLE, ACPI_DISABLE = 0xF1, 0xF0
SCI_IRQ = 9

TMR_STS = 1 << 0
STATUS_BITS = 0x8531                       # TMR, BM, GBL, PWRBTN, RTC, WAK
ENABLE_BITS = 0x0521                       # TMR, GBL, PWRBTN, RTC
SCI_EN = 1 << 0
SLP_TYP_SHIFT, SLP_TYP_MASK = 10, 0x7
SLP_EN = 1 << 13
CONTROL_BITS = 0x1C07                      # SCI_EN, BM_RLD, GBL_RLS, SLP_TYP (SLP_EN is write-only)
SLEEP_STATE_NAMES = {0: "S5 soft off", 1: "S3 suspend to RAM", 2: "S4 suspend to disk"}   # QEMU's DSDT packages

PM_TIMER_HZ = 3_579_545
PM_TIMER_MASK = 0xFFFFFF
TIMER_STATUS_BIT = 1 << 23                 # TMR_STS is set each time this bit of the counter changes
NS_PER_SECOND = 1_000_000_000


class Piix4PowerManagement(Device):
    name = "piix4-pm"
    ports = (PortRange(PM1_EVENT, 4), PortRange(PM1_CONTROL, 2), PortRange(PM_TIMER, 4),
             PortRange(GPE0_STATUS, 4), PortRange(SMI_COMMAND, 2), PortRange(BOCHS_PM1_CONTROL, 2))
    io_width = 4
    irq_lines = (SCI_IRQ,)
    saved_fields = ("status", "enable", "control", "gpe_status", "gpe_enable", "smi_status", "_timer_half")

    def __init__(self, now_ns: Callable[[], int], on_power_off: Callable[[int, str], None],
                 sci: Callable[[bool], None] = lambda level: None) -> None:
        self.now_ns = now_ns
        self.on_power_off = on_power_off
        self.sci = sci
        self.reset()

    def reset(self) -> None:
        self.status = self.enable = self.control = 0
        self.gpe_status = self.gpe_enable = self.smi_status = 0
        self._timer_half = 0                  # how many times bit 23 has changed (timer ticks >> 23)

    # --- time ----------------------------------------------------------------------
    def ticks(self, now_ns: int) -> int:
        return now_ns * PM_TIMER_HZ // NS_PER_SECOND

    def advance(self, now_ns: int) -> None:
        half = self.ticks(now_ns) >> 23
        if half != self._timer_half:
            self._timer_half = half
            self.status |= TMR_STS
            self._update_sci()

    def next_event_ns(self) -> int | None:
        """The next change of timer bit 23, while it would raise an SCI."""
        if not (self.enable & TMR_STS and self.control & SCI_EN):
            return None
        next_tick = (self._timer_half + 1) << 23
        return -(-next_tick * NS_PER_SECOND // PM_TIMER_HZ)

    # --- guest accesses --------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        if PM_TIMER <= port < PM_TIMER + 4:
            value = self.ticks(self.now_ns()) & PM_TIMER_MASK
            return value >> (8 * (port - PM_TIMER))
        if PM1_EVENT <= port < PM1_EVENT + 4:
            self.advance(self.now_ns())
            return (self.status | self.enable << 16) >> (8 * (port - PM1_EVENT))
        if port in (PM1_CONTROL, PM1_CONTROL + 1, BOCHS_PM1_CONTROL, BOCHS_PM1_CONTROL + 1):
            return self.control >> (8 * (port & 1))
        if GPE0_STATUS <= port < GPE0_STATUS + 4:
            return (self.gpe_status | self.gpe_enable << 16) >> (8 * (port - GPE0_STATUS))
        if port == SMI_STATUS:
            return self.smi_status
        return 0

    def io_write(self, port: int, size: int, value: int) -> None:
        self._write(port, size, value)
        self.events_moved()                        # TMR_EN or SCI_EN may have changed

    def _write(self, port: int, size: int, value: int) -> None:
        if PM1_EVENT <= port < PM1_EVENT + 4:
            shifted = value << (8 * (port - PM1_EVENT))
            width = (1 << (8 * size)) - 1 << (8 * (port - PM1_EVENT))
            self.status &= ~(shifted & STATUS_BITS)                     # write 1 to clear
            if width & 0xFFFF0000:
                self.enable = (self.enable & ~(width >> 16)) | ((shifted >> 16) & ENABLE_BITS)
            self._update_sci()
        elif port in (PM1_CONTROL, PM1_CONTROL + 1, BOCHS_PM1_CONTROL, BOCHS_PM1_CONTROL + 1):
            self._write_control(value << 8 if port & 1 else value, size, high_only=bool(port & 1))
        elif GPE0_STATUS <= port < GPE0_STATUS + 4:
            shifted = value << (8 * (port - GPE0_STATUS))
            self.gpe_status &= ~(shifted & 0xFFFF)
            if (port - GPE0_STATUS) + size > 2:
                self.gpe_enable = (shifted >> 16) & 0xFFFF
            self._update_sci()
        elif port == SMI_COMMAND:
            if value == ACPI_ENABLE:
                self.control |= SCI_EN
            elif value == ACPI_DISABLE:
                self.control &= ~SCI_EN
            self._update_sci()
        elif port == SMI_STATUS:
            self.smi_status = value & 0xFF

    def _write_control(self, value: int, size: int, *, high_only: bool) -> None:
        mask = 0xFF00 if high_only else (0xFF if size == 1 else 0xFFFF)
        self.control = (self.control & ~mask) | (value & mask & CONTROL_BITS)
        self._update_sci()
        if value & mask & SLP_EN:
            sleep_type = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK
            self.on_power_off(value & 0xFFFF, SLEEP_STATE_NAMES.get(sleep_type, f"SLP_TYP {sleep_type}"))

    def _update_sci(self) -> None:
        self.sci(bool(self.control & SCI_EN and (self.status & self.enable or self.gpe_status & self.gpe_enable)))

    def describe_state(self) -> str:
        return (f"{self.name}: PM1 status={self.status:#06x} enable={self.enable:#06x} control={self.control:#06x}, "
                f"GPE0 status={self.gpe_status:#06x} enable={self.gpe_enable:#06x}")
