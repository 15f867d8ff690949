"""Output directories are checked before any heavy work: a run that cannot write its results
stops at once with one line naming the setting, not after the model and data have loaded."""

from __future__ import annotations

import os
import tempfile

from arpo.errors import ArpoError


def check_writable_dir(path: str, key: str) -> str:
    """Create `path` if needed and prove a file can be written in it; `key` names the setting."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ArpoError(f"{key}={path!r} is not a writable directory ({reason})") from None
    return path
