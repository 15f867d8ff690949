"""Train/validation assignment of generated problems by a stable hash of their key: the same
problem always lands in the same split whatever the requested sizes, so the splits never overlap."""

from __future__ import annotations

import hashlib

VAL_FRACTION = 0.1


def split_of(key: str, seed: int) -> str:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < VAL_FRACTION else "train"
