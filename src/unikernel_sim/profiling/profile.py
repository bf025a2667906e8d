"""A profile as data: the calling-context tree the C profiler kept, the blocks it saw,
and what follows from them (per function, per source line). Saved as JSON so that two
boots can be compared (`unisim profile --diff A B`)."""
from __future__ import annotations

import collections
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

FORMAT = "unisim-profile-1"
ROOT = "[outside any function]"


@dataclass(frozen=True)
class Node:
    parent: int          # index of the caller's node (the root is its own parent)
    function: int        # index into Profile.functions; -1: the root
    self: int            # instructions executed with this node on top
    calls: int           # times it was entered


@dataclass(frozen=True)
class Block:
    address: int         # where the translated block starts
    size: int            # its bytes
    count: int           # its instructions
    runs: int            # times it ran to its end


@dataclass(frozen=True)
class FunctionRow:
    name: str
    self: int
    inclusive: int
    calls: int


@dataclass
class Profile:
    functions: list[str]
    nodes: list[Node]
    blocks: list[Block]
    partial_runs: dict[tuple[int, int], int]      # (block, instructions it ran before a stop) -> times
    instructions: int                              # the clock's count over the profiled runs
    deterministic: bool
    problems: list[str] = field(default_factory=list)
    histograms: dict = field(default_factory=dict)   # function -> call site -> argument -> value -> calls

    # --- names and paths -----------------------------------------------------------------
    def name_of(self, node: int) -> str:
        function = self.nodes[node].function
        return ROOT if function < 0 else self.functions[function]

    def path_of(self, node: int) -> list[str]:
        """Function names from the outermost caller down to node."""
        path = []
        while node != 0:
            path.append(self.name_of(node))
            node = self.nodes[node].parent
        return list(reversed(path)) or [ROOT]

    # --- totals ------------------------------------------------------------------------------
    @property
    def counted(self) -> int:
        """Instructions the tree holds: equals `instructions` when nothing was lost."""
        return sum(node.self for node in self.nodes)

    def inclusive_per_node(self) -> list[int]:
        totals = [node.self for node in self.nodes]
        for index in range(len(self.nodes) - 1, 0, -1):           # children come after parents
            totals[self.nodes[index].parent] += totals[index]
        return totals

    def per_function(self) -> list[FunctionRow]:
        """Self, inclusive (each recursion counted once) and calls per function, the
        most expensive (self) first."""
        totals = self.inclusive_per_node()
        rows: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for index, node in enumerate(self.nodes):
            name = self.name_of(index)
            row = rows[name]
            row[0] += node.self
            row[2] += node.calls
            if name not in self._ancestors(index):
                row[1] += totals[index]
        return sorted((FunctionRow(name, *values) for name, values in rows.items()),
                      key=lambda row: (-row.self, row.name))

    def _ancestors(self, node: int) -> set[str]:
        names = set()
        while node != 0:
            node = self.nodes[node].parent
            if node != 0:
                names.add(self.name_of(node))
        return names

    def per_line(self, decode: Callable[[int, int, int], list[int]],
                 line_of: Callable[[int], str | None]) -> dict[str, int]:
        """Instructions per source line: each block's instructions (decode(address, size,
        count) -> their addresses) times its runs, plus the runs a stop cut short."""
        per_address: collections.Counter = collections.Counter()
        starts = {}
        for block in self.blocks:
            addresses = decode(block.address, block.size, block.count)
            starts[block.address] = addresses
            for address in addresses:
                per_address[address] += block.runs
        for (block, ran), times in self.partial_runs.items():
            addresses = starts.get(block) or []
            for address in addresses[:ran]:
                per_address[address] += times
        lines: collections.Counter = collections.Counter()
        for address, count in per_address.items():
            lines[line_of(address) or f"{address:#x}"] += count
        return dict(lines)

    # --- files -------------------------------------------------------------------------------
    def to_json(self) -> str:
        data = {"format": FORMAT, "functions": self.functions, "nodes": [asdict(n) for n in self.nodes],
                "blocks": [asdict(b) for b in self.blocks],
                "partial_runs": [[block, ran, times] for (block, ran), times in self.partial_runs.items()],
                "instructions": self.instructions, "deterministic": self.deterministic,
                "problems": self.problems, "histograms": self.histograms}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str = "profile") -> "Profile":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where} is not a unisim profile (written by `unisim profile -o`)")
        return cls(functions=data["functions"], nodes=[Node(**n) for n in data["nodes"]],
                   blocks=[Block(**b) for b in data["blocks"]],
                   partial_runs={(block, ran): times for block, ran, times in data["partial_runs"]},
                   instructions=data["instructions"], deterministic=data["deterministic"],
                   problems=data.get("problems", []), histograms=data.get("histograms", {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
