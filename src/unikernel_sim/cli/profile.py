"""Profiles from the command line: `unisim profile KERNEL [boot options]`, `--profile FILE`
on `unisim boot` and `unisim llama`, and `unisim profile --diff A B`."""
from __future__ import annotations

import argparse
import os
import sys

from unikernel_sim.errors import InputFileError, UsageError
from unikernel_sim.records import record_repr

DEFAULT_TOP = 20


def add_output_arguments(parser: argparse.ArgumentParser, *, prefix: str) -> None:
    """The files a profile can be written as; prefix is "--profile" on boot and llama
    (--profile FILE.json, --profile-svg ...) and "-" on `unisim profile` (-o, --svg ...)."""
    if prefix == "--profile":
        parser.add_argument("--profile", metavar="FILE.json",
                            help="count instructions per function exactly and save the profile (JSON)")
        names = ("--profile-folded", "--profile-speedscope", "--profile-svg", "--profile-lines")
    else:
        parser.add_argument("-o", "--output", dest="profile", metavar="FILE.json",
                            help="save the profile (JSON: `unisim profile --diff` reads it)")
        names = ("--folded", "--speedscope", "--svg", "--lines")
    folded, speedscope, svg, lines = names
    parser.add_argument(folded, dest="profile_folded", metavar="FILE", help="folded stacks (flame-graph input)")
    parser.add_argument(speedscope, dest="profile_speedscope", metavar="FILE.json",
                        help="speedscope's file format (https://www.speedscope.app)")
    parser.add_argument(svg, dest="profile_svg", metavar="FILE.svg", help="a flame graph, self-contained SVG")
    parser.add_argument(lines, dest="profile_lines", metavar="FILE",
                        help="instructions per source line (DWARF), the most first")
    parser.add_argument("--histogram", action="append", default=[], metavar="SYMBOL:REGISTER",
                        type=_histogram_spec,
                        help="with a profile: sizes (REGISTER) and pointer alignments per call site of SYMBOL "
                             "(memcpy, memmove, memset and malloc are always recorded when present)")
    parser.add_argument("--profile-db", metavar="FILE.sqlite",
                        help="with a profile: add it to this database (keyed by the kernel's build ID or hash); "
                             "`unisim profile --show-db FILE` lists what it holds")


def _histogram_spec(text: str):
    from unikernel_sim.profiling.histograms import HistogramSpec

    try:
        return HistogramSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def output_paths(args: argparse.Namespace) -> list[tuple[str, str]]:
    named = (("profile", getattr(args, "profile", None)), ("folded stacks", getattr(args, "profile_folded", None)),
             ("speedscope profile", getattr(args, "profile_speedscope", None)),
             ("flame graph", getattr(args, "profile_svg", None)), ("line profile", getattr(args, "profile_lines", None)))
    return [(what, path) for what, path in named if path]


class ProfileRequest:
    """What a run was asked to profile, and the profiler once the machine exists."""

    def __init__(self, paths: list[tuple[str, str]], *, table: bool = False, top: int = DEFAULT_TOP,
                 histograms: list | None = None, database: str | None = None) -> None:
        self.paths = paths
        self.table = table                   # print the top functions (unisim profile)
        self.top = top
        self.histograms = [] if histograms is None else histograms    # HistogramSpec beyond the defaults
        self.database = database
        self.profilers: list = []
        self.recorders: list = []

    def __repr__(self) -> str:
        return record_repr(self)

    @property
    def wanted(self) -> bool:
        return bool(self.paths) or self.table or self.database is not None

    def attach(self, machine) -> None:
        """An on_loaded callback: start counting before the kernel's first instruction."""
        from unikernel_sim.profiling.collector import Profiler
        from unikernel_sim.profiling.histograms import ArgumentHistograms

        self.profilers.append(Profiler(machine))
        self.recorders.append(ArgumentHistograms.with_defaults(machine, self.histograms))

    def finish(self, args: argparse.Namespace, title: str) -> None:
        """Write what was asked for. Before the machine's first instruction nothing was
        profiled: then nothing is written."""
        if not self.profilers:
            return
        from unikernel_sim.cli.files import write_output_file
        from unikernel_sim.profiling import formats

        profiler, recorder = self.profilers[0], self.recorders[0]
        profile = profiler.result()
        profile.histograms = recorder.as_dict()
        recorder.close()
        writers = {
            "profile": lambda: profile.to_json(),
            "folded stacks": lambda: formats.folded(profile),
            "speedscope profile": lambda: formats.speedscope(profile, title),
            "flame graph": lambda: formats.svg(profile, title),
            "line profile": lambda: _line_table(profiler, profile),
        }
        for what, path in self.paths:
            write_output_file(path, writers[what]().encode(), what)
        if self.database is not None:
            from unikernel_sim.profiling.database import ProfileDatabase

            ProfileDatabase(self.database).add(profiler.machine, profile, command=" ".join(sys.argv[1:]))
        if self.table:
            from unikernel_sim.profiling.histograms import summary

            sys.stdout.flush()
            sys.stdout.write("\n" + formats.table(profile, self.top) + summary(profile.histograms))
            sys.stdout.flush()
        profiler.close()


def request_from(args: argparse.Namespace, *, table: bool = False) -> ProfileRequest:
    return ProfileRequest(paths=[(what, path) for what, path in output_paths(args)], table=table,
                          top=getattr(args, "top", DEFAULT_TOP), histograms=getattr(args, "histogram", []),
                          database=getattr(args, "profile_db", None))


def _line_table(profiler, profile) -> str:
    counts = profiler.per_line(profile)
    total = max(1, sum(counts.values()))
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "".join(f"{count:>14,} {100 * count / total:>6.2f}%  {line}\n" for line, count in rows)


def run_show_db(path: str) -> int:
    from unikernel_sim.profiling.database import ProfileDatabase

    if not os.path.isfile(path):
        raise InputFileError("no such profile database", where=path)
    sys.stdout.write(ProfileDatabase(path).listing())
    return 0


def run_diff(paths: list[str], top: int) -> int:
    from unikernel_sim.profiling import formats
    from unikernel_sim.profiling.profile import Profile

    if len(paths) != 2:
        raise UsageError("--diff takes two profiles", hint="unisim profile --diff BEFORE.json AFTER.json")
    profiles = []
    for path in paths:
        database, _, run = path.rpartition("#")
        if database and run.isdigit():                     # DB.sqlite#RUN: a run the database holds
            from unikernel_sim.profiling.database import ProfileDatabase

            if not os.path.isfile(database):
                raise InputFileError("no such profile database", where=database)
            profiles.append(ProfileDatabase(database).profile(int(run)))
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                profiles.append(Profile.from_json(handle.read(), path))
        except OSError as error:
            raise InputFileError(f"cannot read the profile: {error.strerror}", where=path) from None
        except (ValueError, KeyError, TypeError) as error:
            raise InputFileError(f"not a profile `unisim profile -o` wrote ({error})", where=path) from None
    sys.stdout.write(formats.difference(*profiles, top=top))
    return 0
