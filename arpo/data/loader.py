"""`load_dataset(spec, split, cfg)`: a built-in generated task or a dataset file, as Examples."""

from __future__ import annotations

import os
import random

from arpo.config.data import DataConfig
from arpo.data.arith import arith_examples
from arpo.data.example import DataError, Example
from arpo.data.files import read_examples
from arpo.data.multihop import multihop_examples
from arpo.data.shop import shop_examples

TASKS = {"arith": arith_examples, "multihop": multihop_examples, "shop": shop_examples}
SPLITS = ("train", "val")


def load_dataset(spec: str, split: str = "train", cfg: DataConfig | None = None) -> list[Example]:
    """`spec`: `arith` | `multihop` | `shop` (generated: `cfg.train_size` / `cfg.val_size` problems of the
    split), a `.parquet` / `.jsonl` file, or a folder holding `test.jsonl` (ARPO's `eval/<set>`).
    A file is its own split: validation reads `cfg.val_size` of its rows (0: all), drawn with
    `cfg.seed` and kept in file order (released files are often sorted by kind: ARPO's
    valid.parquet has 80 QA rows, then 100 math rows)."""
    cfg = cfg or DataConfig()
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    size = cfg.train_size if split == "train" else cfg.val_size
    if spec in TASKS:
        if size < 1:
            raise DataError(f"data.{split}_size must be positive for the generated task '{spec}'")
        return TASKS[spec](split, size, cfg)
    path = os.path.join(spec, "test.jsonl") if os.path.isdir(spec) else spec
    if not os.path.isfile(path):
        under_root = cfg.root and spec.startswith(cfg.root)
        hint = f"; data.root={cfg.root!r}: set ARPO_DATA or data.root=..." if under_root else ""
        raise DataError(
            f"dataset not found: {spec} (built-in tasks: {', '.join(TASKS)}; or a .parquet/.jsonl file{hint})"
        )
    examples = read_examples(path, cfg)
    if split == "val" and 0 < size < len(examples):
        keep = sorted(random.Random(f"val:{cfg.seed}").sample(range(len(examples)), size))
        examples = [examples[i] for i in keep]
    return examples
