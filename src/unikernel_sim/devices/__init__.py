"""Platform devices. Devices never import each other: they talk through the
I/O bus (:mod:`.bus`) and through interrupt-line callbacks the machine wires."""
