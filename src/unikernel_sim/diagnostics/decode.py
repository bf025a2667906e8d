"""Names for the bits of RFLAGS, CR0, CR4, EFER and exception error codes
(Intel SDM vol. 1 3.4.3, vol. 3A 2.5, 2.2.1, 4.7, 6.13)."""
from __future__ import annotations

RFLAGS_BITS = {0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF", 11: "OF",
               14: "NT", 16: "RF", 17: "VM", 18: "AC", 19: "VIF", 20: "VIP", 21: "ID"}
CR0_BITS = {0: "PE", 1: "MP", 2: "EM", 3: "TS", 4: "ET", 5: "NE", 16: "WP", 18: "AM", 29: "NW", 30: "CD", 31: "PG"}
CR4_BITS = {0: "VME", 1: "PVI", 2: "TSD", 3: "DE", 4: "PSE", 5: "PAE", 6: "MCE", 7: "PGE", 8: "PCE",
            9: "OSFXSR", 10: "OSXMMEXCPT", 11: "UMIP", 12: "LA57", 13: "VMXE", 14: "SMXE", 16: "FSGSBASE",
            17: "PCIDE", 18: "OSXSAVE", 20: "SMEP", 21: "SMAP", 22: "PKE"}
EFER_BITS = {0: "SCE", 8: "LME", 10: "LMA", 11: "NXE"}


def bit_names(value: int, names: dict[int, str]) -> list[str]:
    return [name for bit, name in sorted(names.items()) if value & (1 << bit)]


def rflags(value: int) -> list[str]:
    names = bit_names(value, RFLAGS_BITS)
    iopl = (value >> 12) & 3
    return names + ([f"IOPL={iopl}"] if iopl else [])


def page_fault_error(code: int) -> str:
    """#PF error code (SDM vol. 3A figure 4-12)."""
    parts = [
        "protection violation" if code & 1 else "page not present",
        "write" if code & 2 else "read",
        "user mode" if code & 4 else "supervisor mode",
    ]
    if code & 8:
        parts.append("reserved bit set")
    if code & 16:
        parts.append("instruction fetch")
    if code & 32:
        parts.append("protection key")
    return ", ".join(parts)


def selector_error(code: int) -> str:
    """Selector error code (SDM vol. 3A figure 6-6)."""
    if code == 0:
        return "0"
    table = "IDT" if code & 2 else ("LDT" if code & 4 else "GDT")
    index = code >> 3
    text = f"{table} entry {index:#x}" + (f" (vector {index:#x})" if table == "IDT" else "")
    return text + (", external event" if code & 1 else "")


def error_code(vector: int, code: int | None) -> str | None:
    if code is None:
        return None
    if vector == 14:
        return page_fault_error(code)
    if vector in (10, 11, 12, 13, 17):
        return selector_error(code)
    return None
