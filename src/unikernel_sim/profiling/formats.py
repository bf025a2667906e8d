"""What a profile looks like to people and to other tools: a terminal table, folded
stacks (`a;b;c count`, the flame-graph input), speedscope's JSON file format, a
self-contained SVG flame graph, and the difference between two profiles."""
from __future__ import annotations

import html
import json
import zlib

from unikernel_sim.profiling.profile import Profile

SVG_WIDTH = 1200
ROW_HEIGHT = 17
CHARACTER_WIDTH = 7                  # of the 12 px monospace text in the SVG, for clipping names


def table(profile: Profile, top: int = 20) -> str:
    """The functions with the most instructions of their own."""
    total = max(1, profile.counted)
    kind = "exact instruction counts" + ("" if profile.deterministic else
                                         " (fast mode: interrupts land where host time puts them)")
    lines = [f"{profile.counted:,} instructions profiled, {kind}",
             f"{'self':>14} {'self %':>7} {'inclusive':>14} {'calls':>10}  function"]
    for row in profile.per_function()[:top]:
        lines.append(f"{row.self:>14,} {100 * row.self / total:>6.2f}% {row.inclusive:>14,} {row.calls:>10,}  "
                     f"{row.name}")
    lines += [f"warning: {problem}" for problem in profile.problems]
    return "\n".join(lines) + "\n"


def folded(profile: Profile) -> str:
    """One line per calling context with instructions of its own: `outer;...;inner count`."""
    rows = [f"{';'.join(profile.path_of(index))} {node.self}"
            for index, node in enumerate(profile.nodes) if node.self]
    return "\n".join(sorted(rows)) + "\n"


def speedscope(profile: Profile, name: str = "unisim") -> str:
    """speedscope's file format ("sampled" profile: one weighted stack per context)."""
    frames: dict[str, int] = {}
    samples, weights = [], []
    for index, node in enumerate(profile.nodes):
        if node.self:
            samples.append([frames.setdefault(frame, len(frames)) for frame in profile.path_of(index)])
            weights.append(node.self)
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": frame} for frame in frames]},
        "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0,
                      "endValue": sum(weights), "samples": samples, "weights": weights}],
        "name": name, "exporter": "unikernel_sim",
    }
    return json.dumps(document)


def svg(profile: Profile, title: str = "unisim profile") -> str:
    """A flame graph: callers below, callees above, widths in instructions."""
    totals = profile.inclusive_per_node()
    children: dict[int, list[int]] = {}
    for index, node in enumerate(profile.nodes[1:], start=1):
        children.setdefault(node.parent, []).append(index)
    scale = SVG_WIDTH / max(1, totals[0])
    depth_of = {0: 0}
    rectangles = []

    def place(index: int, x: float) -> None:
        depth = depth_of[index]
        width = totals[index] * scale
        if width >= 0.5:
            rectangles.append((index, x, depth, width))
        offset = x
        for child in sorted(children.get(index, []), key=lambda c: profile.name_of(c)):
            depth_of[child] = depth + 1
            place(child, offset)
            offset += totals[child] * scale

    place(0, 0.0)
    height = (max(depth_of.values()) + 2) * ROW_HEIGHT + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
             f'font-family="monospace" font-size="12">',
             f'<text x="4" y="16">{html.escape(title)} ({totals[0]:,} instructions)</text>']
    for index, x, depth, width in rectangles:
        y = height - (depth + 1) * ROW_HEIGHT
        name = "all" if index == 0 else profile.name_of(index)
        share = 100 * totals[index] / max(1, totals[0])
        hue = 20 + zlib.crc32(name.encode()) % 40          # warm colours, the same on every run
        label = name if len(name) * CHARACTER_WIDTH < width - 4 else name[:max(0, int((width - 4) // CHARACTER_WIDTH) - 2)]
        parts.append(f'<g><title>{html.escape(name)}: {totals[index]:,} instructions ({share:.2f} %)</title>'
                     f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{ROW_HEIGHT - 1}" '
                     f'fill="hsl({hue},80%,60%)"/>'
                     + (f'<text x="{x + 2:.2f}" y="{y + 12}">{html.escape(label)}</text>' if label else "")
                     + "</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def difference(before: Profile, after: Profile, top: int = 20) -> str:
    """Self instructions per function, before and after, the largest changes first."""
    old = {row.name: row.self for row in before.per_function()}
    new = {row.name: row.self for row in after.per_function()}
    names = sorted(set(old) | set(new), key=lambda n: (-abs(new.get(n, 0) - old.get(n, 0)), n))
    lines = [f"instructions: {before.counted:,} -> {after.counted:,} "
             f"({_change(before.counted, after.counted)})",
             f"{'before':>14} {'after':>14} {'change':>14} {'':>8}  function"]
    for name in names[:top]:
        a, b = old.get(name, 0), new.get(name, 0)
        if a == b:
            continue
        lines.append(f"{a:>14,} {b:>14,} {b - a:>+14,} {_change(a, b):>8}  {name}")
    return "\n".join(lines) + "\n"


def _change(before: int, after: int) -> str:
    if before == 0:
        return "new" if after else "0"
    return f"{100 * (after - before) / before:+.1f}%"
