"""The device contract: what every device on the board declares and offers.

A device says where it lives (port ranges and/or MMIO windows), which ISA
interrupt lines it drives, how it behaves over virtual time, and which of its
fields are its state. The board, the run loop, snapshots and the crash report
iterate devices through this contract alone, so adding a device is one file
plus one line in the board.

Saved state follows QEMU's VMState idea: a device lists its fields by name
(``saved_fields``); ``save_state`` copies exactly those, ``load_state`` puts
them back. Callbacks (interrupt lines, the clock, output sinks) are wiring,
not state: they are never listed, so never copied or pickled.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from unikernel_sim.devices._state_load import links_hold, load_containers, load_plain
from unikernel_sim.records import Record


class PortRange(Record):
    """I/O ports first .. first+count-1."""

    first: int
    count: int = 1


class MmioWindow(Record):
    """Physical addresses base .. base+size-1 (whole 4 KiB pages: Unicorn maps pages)."""

    base: int
    size: int


State = dict[str, Any]


_CONTAINERS = (deque, bytearray, list, dict, set)
PLAIN, NESTED, NESTED_LIST, CONTAINER, PROPERTY = range(5)
PLAIN_VALUES, OTHER_FIELDS = " plain", " others"      # keys no field name can be


def _kind(value: Any) -> int:
    if isinstance(value, Stateful):
        return NESTED
    if isinstance(value, list) and value and all(isinstance(item, Stateful) for item in value):
        return NESTED_LIST
    if isinstance(value, _CONTAINERS):
        return CONTAINER
    return PLAIN


class Stateful:
    """Something with a declared state: ``saved_fields`` names the attributes that
    make it up. A field holding another Stateful (or a list of them) is saved as
    that object's own state and loaded back into the same object; a container is
    copied one level deep (its items are plain values); anything else is shared.

    What kind each field is gets decided once per class, from the first object's
    values, and a saved state keeps its plain values (most fields) in one dict under
    PLAIN_VALUES that loading puts back with one ``__dict__.update``: restoring a
    snapshot loads every device, thousands of times a second in a test suite, and a
    setattr per field was most of a restore (48 us of ~90)."""

    saved_fields: tuple[str, ...] = ()
    _field_kinds: tuple[tuple[str, int], ...] | None = None
    _field_kind_map: dict[str, int] | None = None

    def _kinds(self) -> tuple[tuple[str, int], ...]:
        kinds = type(self).__dict__.get("_field_kinds")
        if kinds is None:
            kinds = tuple((name, PROPERTY if isinstance(getattr(type(self), name, None), property)
                           else _kind(getattr(self, name))) for name in self.saved_fields)
            type(self)._field_kinds = kinds
            type(self)._field_kind_map = dict(kinds)
        return kinds

    def _kind_map(self) -> dict[str, int]:
        kinds = type(self).__dict__.get("_field_kind_map")
        if kinds is None:
            self._kinds()
            kinds = type(self)._field_kind_map
        return kinds

    def save_state(self) -> State:
        plain: State = {}
        others: list[str] = []
        state: State = {PLAIN_VALUES: plain, OTHER_FIELDS: others}
        for name, kind in self._kinds():
            value = getattr(self, name)
            if kind == PLAIN and not isinstance(value, _CONTAINERS):
                plain[name] = value
                continue
            others.append(name)
            if kind == NESTED:
                state[name] = value.save_state()
            elif kind == NESTED_LIST:
                state[name] = [item.save_state() for item in value]
            elif isinstance(value, _CONTAINERS):
                state[name] = type(value)(value)
            else:
                state[name] = value                 # a property's plain value
        return state

    def load_state(self, state: State) -> None:
        """Containers are copied only where they differ from the saved ones: a guest
        call changes few devices, and comparing a register file is cheaper than making
        a new one (the PCI functions' configuration spaces were most of a restore)."""
        self.__dict__.update(state[PLAIN_VALUES])
        for how, name, saved in _other_fields(self, state):
            if how == NESTED:
                getattr(self, name).load_state(saved)
            elif how == NESTED_LIST:
                for item, item_state in zip(getattr(self, name), saved):
                    item.load_state(item_state)
            elif how == CONTAINER:
                _put_back_container(self, name, saved)
            else:
                setattr(self, name, saved)                     # a property
        self.after_load()

    def after_load(self) -> None:
        """Called once the state is back, to tell what depends on it (the UART's C port
        path): overriding this rather than load_state keeps a restore's flattened plan."""


def _other_fields(obj: Stateful, state: State):
    """How each saved field beyond the plain ones goes back, in the state's order:
    (NESTED or NESTED_LIST, name, its state) into the same object(s), (CONTAINER, name,
    saved) as a copy where it differs, (PROPERTY, name, saved) through its setter."""
    others = state[OTHER_FIELDS]
    if not others:
        return
    kinds = obj._kind_map()
    for name in others:
        saved, kind = state[name], kinds[name]
        if kind in (NESTED, NESTED_LIST):
            yield kind, name, saved
        elif isinstance(saved, _CONTAINERS):
            yield CONTAINER, name, saved
        else:
            yield PROPERTY, name, saved


def _put_back_container(obj: Stateful, name: str, saved) -> None:
    if getattr(obj, name) != saved:
        setattr(obj, name, type(saved)(saved))                 # the snapshot keeps its own copy


_CONTAINER_PROPERTY, _SETATTR, _CUSTOM = range(3)      # LoadPlan.others step kinds


class LoadPlan:
    """Stateful.load_state for a list of objects and their saved states, flattened once:
    the same steps (_other_fields decides them for both), without a method call and a
    kind lookup per object and field. A board restore is 17 devices and 11 nested
    objects (the PICs, the PIT's channels, the PCI functions); a test suite restores
    thousands of times.

    The steps run grouped by kind, each group in the objects' order: every object's
    plain values, then the containers that differ, then the rest (property setters,
    a device's own load_state) in their order, then the after_load calls. Each object
    thus gets its plain values before its setters run, as load_state does; what a
    setter reads of another object is already loaded too.

    The plain values and the containers, most of a restore's work, are loaded by two
    C loops (_state_load.c), which also say what they changed: an object's after_load
    runs only if something in its subtree was put back (a setter or an own load_state
    there counts as a change). A value that is still the object the last load put
    there is left alone. The rest is rare enough for Python.

    Valid only while every nested object is the one the plan was made for: a device
    that replaces one (the PIT's reset makes new channels) makes apply() return False
    before it changes anything, and the caller loads the slow way."""

    def __init__(self, objects: list["Stateful"], states: list[State]) -> None:
        self.links: list[tuple[dict, str, int | None, Stateful]] = []   # (owner's __dict__, field, index, child)
        self.plain: list[tuple[dict, State]] = []                       # (__dict__, its plain values)
        self.containers: list[tuple[dict, str, Any]] = []               # (__dict__, field, saved container)
        self.others: list[tuple] = []                                   # (kind: setter or own load_state, ...)
        self.after_loads: list[tuple] = []       # (after_load, its subtree's plain and container index ranges, always)
        for obj, state in zip(objects, states, strict=True):
            self._add(obj, state)

    def _add(self, obj: "Stateful", state: State) -> None:
        if type(obj).load_state is not Stateful.load_state:
            self.others.append((_CUSTOM, obj, state))            # its own load_state does its subtree
            return
        first_plain, first_container, first_other = len(self.plain), len(self.containers), len(self.others)
        values = obj.__dict__
        self.plain.append((values, state[PLAIN_VALUES]))
        for how, name, saved in _other_fields(obj, state):
            if how == NESTED:
                self.links.append((values, name, None, getattr(obj, name)))
                self._add(getattr(obj, name), saved)
            elif how == NESTED_LIST:
                for index, (item, item_state) in enumerate(zip(getattr(obj, name), saved)):
                    self.links.append((values, name, index, item))
                    self._add(item, item_state)
            elif how == CONTAINER and name in values:
                self.containers.append((values, name, saved))    # a plain attribute: its dict entry
            elif how == CONTAINER:
                self.others.append((_CONTAINER_PROPERTY, obj, name, saved))
            else:
                self.others.append((_SETATTR, obj, name, saved))
        if type(obj).after_load is not Stateful.after_load:
            self.after_loads.append((obj.after_load, first_plain, len(self.plain), first_container,
                                     len(self.containers), len(self.others) > first_other))

    def apply(self) -> bool:
        """Load every state; False, with nothing loaded, if a nested object was replaced."""
        if not links_hold(self.links):                           # a nested object was replaced
            return False
        plain_put = load_plain(self.plain)                       # values.update(saved), each
        containers_put = load_containers(self.containers)        # a copy where values[name] != saved
        for step in self.others:
            kind = step[0]
            if kind == _CONTAINER_PROPERTY:
                _put_back_container(step[1], step[2], step[3])
            elif kind == _SETATTR:
                setattr(step[1], step[2], step[3])
            else:
                step[1].load_state(step[2])
        for after_load, plain_from, plain_to, containers_from, containers_to, always in self.after_loads:
            if (always or plain_put.find(1, plain_from, plain_to) >= 0
                    or containers_put.find(1, containers_from, containers_to) >= 0):
                after_load()
        return True


class Device(Stateful):
    """A device on the board.

    ports / mmio: where the guest reaches it. io_width: the widest port access it
    takes whole (wider ones are split into bytes by the bus, as the ISA bus does).
    irq_lines: the ISA IRQs it drives (for the report and the scheduler).
    interrupt_only_events: its timed events only raise its IRQ lines, so while
    every one of them is masked the guest need not be stopped for them (the PIT:
    its counters are computed from time, never stepped).
    """

    name = "device"
    ports: tuple[PortRange, ...] = ()
    io_width = 1
    mmio: tuple[MmioWindow, ...] = ()
    irq_lines: tuple[int, ...] = ()
    interrupt_only_events = False

    def reset(self) -> None:
        """Back to the power-on state."""

    def events_moved(self) -> None:
        """Tell the machine this device's next_event_ns() may have changed because of a
        guest access (the board wires it to the scheduler; a device that computes its
        events from registers the guest writes must call it, or a run that is already
        past its last deadline never stops for the new one)."""

    # --- time --------------------------------------------------------------------
    def advance(self, now_ns: int) -> None:
        """Bring the device up to virtual time now_ns (raise what is due)."""

    def next_event_ns(self) -> int | None:
        """Virtual time of the next thing the device must do on its own, or None."""
        return None

    # --- guest accesses ------------------------------------------------------------
    def io_read(self, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def io_write(self, port: int, size: int, value: int) -> None:
        pass

    def mmio_read(self, offset: int, size: int) -> int:
        """A read of size bytes at offset from the start of the window holding it."""
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        pass

    # --- reports -----------------------------------------------------------------
    def describe_state(self) -> str:
        """One line for the crash report and `monitor devices`."""
        fields = ", ".join(f"{name}={_short(getattr(self, name))}" for name in self.saved_fields[:6])
        return f"{self.name}: {fields}" if fields else self.name


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:#x}"
    if isinstance(value, (deque, list, bytearray, bytes)):
        return f"[{len(value)}]"
    return str(value)
