"""The per-step logs of a run directory (`metrics.jsonl`, `samples.jsonl` and any other top-level
`*.jsonl` whose rows carry a `step`), made consistent with the checkpoint a run resumes from.

A checkpoint records how many rows each log had when it was saved (`row_counts`); on resume every
log is cut back to that many rows, so rows written after the checkpoint (later steps, the final
held-out row of a finished run) are written once more by the resumed run and never twice. A torn
last line (the process was killed mid-write) or any other unreadable line is dropped.
"""

from __future__ import annotations

import glob
import json
import logging
import os

log = logging.getLogger(__name__)

OWN_LOGS = ("metrics.jsonl", "samples.jsonl")  # per-step even before their first complete row


def _paths(run_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(run_dir), "*.jsonl")))


def _read_rows(path: str) -> tuple[list[dict], int]:
    """(readable rows, number of unreadable lines)."""
    rows, bad = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


def _is_per_step(path: str, rows: list[dict]) -> bool:
    return os.path.basename(path) in OWN_LOGS or any("step" in r for r in rows)


def row_counts(run_dir: str) -> dict[str, int]:
    """Rows of each per-step log now: what a checkpoint saved at this moment covers."""
    counts = {}
    for path in _paths(run_dir):
        rows, _ = _read_rows(path)
        if _is_per_step(path, rows):
            counts[os.path.basename(path)] = len(rows)
    return counts


def repair(run_dir: str, start_step: int, kept_rows: dict[str, int] | None) -> None:
    """Cut every per-step log back to what the checkpoint at `start_step` covers: its recorded
    row count, or (a log it did not count, or no checkpoint) the rows of steps up to `start_step`;
    a fresh run (`start_step` 0, nothing recorded) keeps none."""
    for path in _paths(run_dir):
        rows, bad = _read_rows(path)
        if not _is_per_step(path, rows):
            continue
        name = os.path.basename(path)
        if kept_rows and name in kept_rows:
            keep = rows[: kept_rows[name]]
        else:
            keep = [r for r in rows if start_step and r.get("step", 0) <= start_step]
        if bad:
            log.warning("%s: dropped %d unreadable line(s) (a write cut short by a kill)", path, bad)
        if len(keep) != len(rows) or bad:
            _rewrite(path, keep)


def _rewrite(path: str, rows: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)
