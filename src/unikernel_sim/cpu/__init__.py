"""The CPU side: engine set-up, the virtual clock hooks, the Multiboot2
hand-off stub, and (later) exception/IRQ delivery through the guest IDT."""
