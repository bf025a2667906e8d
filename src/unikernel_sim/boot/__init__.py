"""Booting a kernel the way a Multiboot2 loader does: find and validate the
header, load the ELF (or the address-tag image), place modules and the boot
information, and hand over in 32-bit protected mode."""
