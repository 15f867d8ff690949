"""What the benchmark scripts share: a description of the machine they ran on (CPU, cores, the GPU
when one is visible, torch, load) and appending a dated section to the log in
benchmarks/RESULTS.md. The headline tables at the top of RESULTS.md are kept by hand from these."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else (platform.processor() or "unknown CPU")


def machine(threads: int | None = None) -> str:
    """`host arch; CPU <name>, <n> cores[, <t> torch threads]; GPU <name> | no GPU; torch <v>; load <l>`."""
    import torch

    parts = [f"CPU {cpu_name()}, {os.cpu_count()} cores"]
    if threads is not None:
        parts[0] += f", {threads} torch threads"
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()} x {torch.cuda.device_count()}")
    else:
        parts.append("no GPU")
    parts.append(f"torch {torch.__version__}")
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f} at the start")
    return f"{platform.node()} {platform.machine()}; " + "; ".join(parts)


def utc_now() -> str:
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def append_result(title: str, command: str, body: str, machine_line: str, path: Path = RESULTS) -> str:
    """Append `### <title>, <date>` with the machine, the command and `body` (tables, notes) to the
    log at the end of RESULTS.md; returns the section."""
    section = (
        f"\n### {title}, {utc_now()}\n\nMachine: {machine_line}.\nCommand: `{command}`.\n\n{body.strip()}\n"
    )
    with open(path, "a") as f:
        f.write(section)
    return section
