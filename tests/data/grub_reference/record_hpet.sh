#!/bin/sh
# Build the HPET probes and record them under GRUB 2.06 + QEMU 7.2 (RECIPE.md, "The HPET's ...").
# Needs gcc (multilib), ld, grub-mkrescue (grub-pc-bin, grub-common, xorriso, mtools) and
# qemu-system-x86_64. Writes probe_hpet*.elf and the *_qemu-7.2_pc.txt recordings here.
set -e
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -m32 -c "$here/entry.S" -o "$work/entry.o"
for probe in hpet32:hpet32 hpet_period:hpet_period hpet_oneshot:hpet_oneshot; do
    name=${probe%%:*}
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
