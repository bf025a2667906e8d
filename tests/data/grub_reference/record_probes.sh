#!/bin/sh
# Build probes and record them under GRUB 2.06 + QEMU 7.2 (RECIPE.md): sh record_probes.sh NAME...
# builds probe_NAME.c (with probe_serial.h, entry.S and probe.ld) into probe_NAME.elf, boots it
# from a CD image with grub.cfg, and keeps what it printed in NAME_qemu-7.2_pc.txt.
# Needs gcc (multilib), ld, grub-mkrescue (grub-pc-bin, grub-common, xorriso, mtools) and
# qemu-system-x86_64.
set -e
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -m32 -c "$here/entry.S" -o "$work/entry.o"
for name in "$@"; do
    gcc -m32 -ffreestanding -fno-pie -fno-pic -O2 -nostdlib -fno-stack-protector -I"$here" \
        -c "$here/probe_$name.c" -o "$work/probe.o"
    ld -m elf_i386 -T "$here/probe.ld" "$work/entry.o" "$work/probe.o" -o "$here/probe_$name.elf" 2>/dev/null
    rm -rf "$work/iso" && mkdir -p "$work/iso/boot/grub"
    cp "$here/probe_$name.elf" "$work/iso/boot/probe.elf"
    cp "$here/module.txt" "$work/iso/boot/" && cp "$here/grub.cfg" "$work/iso/boot/grub/"
    grub-mkrescue -o "$work/probe.iso" "$work/iso" >/dev/null 2>&1
    qemu-system-x86_64 -m 512M -cdrom "$work/probe.iso" -display none -serial "file:$work/serial.txt" \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 -no-reboot || true    # the exit port's status
    # keep what the probe printed: from its first line (GRUB's menu escapes come before it)
    python3 - "$work/serial.txt" "$here/${name}_qemu-7.2_pc.txt" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read().decode("latin-1").replace("\r", "")
starts = [raw.find(word) for word in ("start ", "set\n", "interrupt ") if raw.find(word) >= 0]
open(sys.argv[2], "w").write(raw[min(starts):])
PY
done
