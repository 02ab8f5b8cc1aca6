"""The results store of a sweep: ``results.csv`` (append-only, atomic, locked) and the sweep lock.

Only the parent (the process running :func:`~yolo_necks.ablation.runner.run_sweep`, or the Ray driver) writes here;
workers return rows. Every append rewrites the file through a temporary file and ``os.replace``, so a crash or kill at
any moment leaves either the old or the new file, never a torn one. Reading is forgiving but never silent: a line that
cannot be a row (truncated, garbage after a full disk, hand edits) is reported once, kept out of what the summaries
see, and kept in the file byte for byte.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import NeckError
from .columns import RESULTS_COLUMNS as COLUMNS

RESULTS = "results.csv"
STATUSES = ("ok", "failed")
_WARNED: set[tuple[str, tuple[int, ...]]] = set()


@dataclass
class Records:
    """What :meth:`ResultsStore.read_records` found: the header, the readable rows, and the unreadable lines (their
    1-based line numbers and raw text), in file order (``order``: ``("row", i)`` or ``("bad", j)``)."""

    header: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    order: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bad_lines(self) -> list[int]:
        return [n for n, _ in self.bad]


class ResultsStore:
    """Append-only ``results.csv`` with atomic appends, a folder lock, and checked reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ------------------------------------------------------------------------------------------------ reading
    def read(self, warn: bool = True) -> list[dict[str, str]]:
        """The readable rows (unreadable lines are reported once per process, see :meth:`read_records`)."""
        return self.read_records(warn).rows

    def read_records(self, warn: bool = True) -> Records:
        """Parse the file record by record, keeping each record's raw text, and sort out unreadable ones.

        A record is unreadable when its number of fields differs from the header's, when its ``status`` is not one
        the harness writes, or when it holds a NUL byte. With ``warn``, one warning per process names the file and
        the line numbers.
        """
        if not self.path.is_file():
            return Records()
        text = self.path.read_bytes().decode("utf-8", errors="replace")
        return parse_records(text, self.path if warn else None)

    def frame(self, warn: bool = True):
        """The readable rows as a pandas DataFrame (numbers parsed, empty cells NaN)."""
        import pandas as pd

        records = self.read_records(warn)
        if not records.rows:
            return pd.DataFrame(columns=records.header or COLUMNS)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, records.header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records.rows)
        buf.seek(0)
        return pd.read_csv(buf, keep_default_na=False, na_values=[""])

    # ------------------------------------------------------------------------------------------------ writing
    def _lock(self):
        return folder_lock(self.path.parent)

    def append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            old = self.path.read_bytes().decode("utf-8", errors="replace") if self.path.is_file() else ""
            header = next(csv.reader(io.StringIO(old)), None) if old else None
            buf = io.StringIO()
            if header == COLUMNS:  # the usual case: keep the old bytes, add one line
                buf.write(old if old.endswith("\n") else old + "\n")
                csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n").writerow(_cells(row))
            else:  # a new file, or one written with other columns: every old row under the union of columns
                records = parse_records(old, None) if old else Records()
                columns = list(records.header) + [c for c in COLUMNS if c not in records.header]
                writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
                writer.writeheader()
                for kind, i in records.order:
                    if kind == "row":
                        writer.writerow(records.rows[i])
                    else:  # an unreadable line stays as it was
                        raw = records.bad[i][1]
                        buf.write(raw if raw.endswith("\n") else raw + "\n")
                writer.writerow(_cells(row))
            atomic_write(self.path, buf.getvalue())


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Exclusive lock on a folder (POSIX ``flock``), so two processes never interleave their appends to its files."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: a single writer is assumed
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def parse_records(text: str, warn_path: Path | None) -> Records:
    """Split CSV text into header, readable rows and unreadable records (see :meth:`ResultsStore.read_records`).

    Records are parsed one at a time from their first physical line. A bad record that spans several lines (a
    truncated quoted field swallows the lines after it) is re-read as one bad line, and parsing resumes on the next
    line, so one damaged line never hides the good rows after it.
    """
    lines = text.splitlines(keepends=True)
    out = Records()
    if not lines:
        return out
    header_reader = csv.reader(lines)
    try:
        out.header = next(header_reader)
    except (csv.Error, StopIteration):
        return out
    i = header_reader.line_num
    while i < len(lines):
        reader = csv.reader(lines[j] for j in range(i, len(lines)))
        try:
            fields = next(reader)
            span = reader.line_num
        except (csv.Error, StopIteration):
            fields, span = None, len(lines) - i
        raw = "".join(lines[i : i + span])
        row = dict(zip(out.header, fields or []))
        if fields is not None and (not fields or (len(fields) == 1 and not fields[0].strip())):
            i += span  # a blank line
            continue
        if fields is None or len(fields) != len(out.header) or "\x00" in raw or row.get("status") not in STATUSES:
            out.order.append(("bad", len(out.bad)))
            out.bad.append((i + 1, lines[i]))
            i += 1
            continue
        out.order.append(("row", len(out.rows)))
        out.rows.append(row)
        i += span
    if warn_path is not None and out.bad:
        key = (str(warn_path.resolve()), tuple(out.bad_lines))
        if key not in _WARNED:
            _WARNED.add(key)
            from ultralytics.utils import LOGGER

            lines_text = ", ".join(str(n) for n in out.bad_lines)
            LOGGER.warning(
                f"{warn_path}: {len(out.bad)} unreadable line(s) ({lines_text}: truncated or not a results row); "
                "they stay in the file and are left out of resume and the summaries"
            )
    return out


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _cells(row: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k in COLUMNS:
        v = row.get(k, "")
        if v is None:
            v = ""
        elif isinstance(v, float):
            v = repr(v)
        elif isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, sort_keys=True)
        out[k] = str(v)
    return out


@contextlib.contextmanager
def sweep_lock(folder: Path):
    """Hold ``folder/.ablate.lock`` while a sweep runs: a second ``ablate`` of the same sweep fails at once instead of
    training the same runs twice. The kernel drops the lock if the process dies, even by SIGKILL."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(Path(folder) / ".ablate.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NeckError(
                f"{folder}: another 'yolo-necks ablate' process is running this sweep; wait for it to finish "
                "(finished runs are kept) or choose another name="
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
