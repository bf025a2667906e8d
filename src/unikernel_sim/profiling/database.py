"""Profiles that outlive a boot: one SQLite file, one row per profiled run, keyed by the
kernel it profiled (its GNU build ID when the ELF has one, else the SHA-256 of the
image), so that boot 1 and boot 100 of the same kernel, or of two builds, can be
compared (`unisim profile --diff DB.sqlite#1 DB.sqlite#100`)."""
from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from typing import TYPE_CHECKING

from unikernel_sim.errors import InputFileError, OutputError
from unikernel_sim.profiling.profile import Profile

if TYPE_CHECKING:
    from unikernel_sim.machine import Machine

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    kernel TEXT NOT NULL,          -- build ID or sha256 of the image
    image TEXT NOT NULL,           -- the path it was booted from
    recorded TEXT NOT NULL,        -- UTC, ISO 8601
    command TEXT NOT NULL,
    deterministic INTEGER NOT NULL,
    instructions INTEGER NOT NULL,
    top_function TEXT NOT NULL,
    profile TEXT NOT NULL          -- Profile.to_json()
);
CREATE INDEX IF NOT EXISTS runs_by_kernel ON runs (kernel, id);
"""
NOTE_GNU_BUILD_ID = 3


def kernel_key(machine: "Machine") -> str:
    """build-id:HEX from the ELF's .note.gnu.build-id, else sha256:HEX of the image."""
    kernel = machine.kernel
    data = kernel.image_data if kernel is not None else b""
    build_id = _build_id(data)
    return f"build-id:{build_id}" if build_id else f"sha256:{hashlib.sha256(data).hexdigest()}"


def _build_id(data: bytes) -> str | None:
    if not data.startswith(b"\x7fELF"):
        return None
    try:
        import io

        from elftools.elf.elffile import ELFFile

        for section in ELFFile(io.BytesIO(data)).iter_sections():
            if section.header.sh_type == "SHT_NOTE":
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        return note["n_desc"]
    except Exception:  # noqa: BLE001 - a damaged note only costs the build ID; the hash stands in
        return None
    return None


class ProfileDatabase:
    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path)
            connection.executescript(SCHEMA)
            return connection
        except sqlite3.Error as error:
            raise OutputError(f"cannot use the profile database: {error}", where=self.path) from None

    def add(self, machine: "Machine", profile: Profile, command: str) -> int:
        rows = profile.per_function()
        image = machine.kernel.path if machine.kernel is not None else ""
        with self._connect() as connection:
            cursor = connection.execute(
                "INSERT INTO runs (kernel, image, recorded, command, deterministic, instructions, top_function, "
                "profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kernel_key(machine), str(image), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 command, int(profile.deterministic), profile.instructions, rows[0].name if rows else "",
                 profile.to_json()))
            return int(cursor.lastrowid)

    def listing(self) -> str:
        try:
            connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            runs = connection.execute("SELECT id, kernel, recorded, deterministic, instructions, top_function, image "
                                      "FROM runs ORDER BY kernel, id").fetchall()
        except sqlite3.Error as error:
            raise InputFileError(f"not a profile database ({error})", where=self.path) from None
        lines = []
        kernel = None
        for run_id, key, recorded, deterministic, instructions, top, image in runs:
            if key != kernel:
                kernel = key
                lines.append(f"{key} ({image})")
            mode = "deterministic" if deterministic else "fast"
            lines.append(f"  run {run_id}: {recorded}, {instructions:,} instructions ({mode}), most in {top}")
        return "\n".join(lines) + "\n" if lines else f"{self.path}: no profiles yet\n"

    def profile(self, run_id: int) -> Profile:
        try:
            connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            row = connection.execute("SELECT profile FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.Error as error:
            raise InputFileError(f"not a profile database ({error})", where=self.path) from None
        if row is None:
            raise InputFileError(f"no run {run_id} in it (see `unisim profile --show-db {self.path}`)",
                                 where=self.path)
        return Profile.from_json(row[0], f"{self.path} run {run_id}")
