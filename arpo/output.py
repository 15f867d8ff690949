"""The one output channel: what train, eval and the tools tell a person while they work (progress,
notes, warnings, result tables) goes to stderr through one console, from rank 0 only, so a
`torchrun` launch prints each line once. Records logged under the `arpo.` logger hierarchy (the
tools log their warnings with `logging.getLogger(__name__)`) reach the same console.

Files (metrics.jsonl, results.json, transcripts) are written by their owners; this is for people.
"""

from __future__ import annotations

import logging
import os

from rich.console import Console

console = Console(stderr=True)
# torchrun sets RANK before the process starts; the trainer confirms it once the group is up.
_state = {"enabled": os.environ.get("RANK", "0") == "0"}


def set_enabled(enabled: bool) -> None:
    _state["enabled"] = enabled


def enabled() -> bool:
    return _state["enabled"]


def say(text) -> None:
    """Print `text` (a string with rich markup, or a rich renderable) on rank 0."""
    if _state["enabled"]:
        console.print(text)


def warn(text: str) -> None:
    say(f"[yellow]{text}")


class _ChannelHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.WARNING:
            message = f"[yellow]{message}"
        say(message)


logging.getLogger("arpo").addHandler(_ChannelHandler())
