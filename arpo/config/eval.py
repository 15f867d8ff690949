"""`eval`: what `arpo eval` measures (benchmarks, greedy or k samples) and where it writes."""

from dataclasses import dataclass

from arpo.errors import ConfigError


@dataclass
class EvalConfig:
    """`arpo eval`: benchmarks, sampling protocol and outputs."""

    # Comma-separated benchmarks: built-in tasks (arith, shop, multihop; their held-out split), .parquet /
    # .jsonl files, eval/<set> folders, or ARPO's sets by name (gsm8k, math500, aime24, hotpotqa,
    # 2wiki, webwalker, gaia), read from <repo>/../shared/data/arpo/eval/<name>. Empty: data.val.
    # Or BFCL: `bfcl:` and its category names or groups (bfcl:simple_python,multi_turn_base; bfcl:offline).
    data: str = ""
    # true: one greedy answer per question (pass@1 = accuracy). false: `k` samples per question at
    # rollout.temperature / top_p / top_k, reporting pass@1 and pass@k.
    greedy: bool = True
    k: int = 1
    # Questions per benchmark, drawn with data.seed and kept in file order (0: every question of a
    # file; data.val_size problems of a built-in task).
    limit: int = 0
    batch_size: int = 16  # prompts handed to the engine together
    out: str = ""  # results.json and transcripts_<bench>.jsonl go here; empty: <run_dir>/eval
    # BFCL side by side: comma-separated models (each evaluated like model.path) or result directories.
    compare: str = ""

    def validate(self) -> None:
        if self.k < 1 or self.batch_size < 1 or self.limit < 0:
            raise ConfigError(
                f"eval.k and eval.batch_size must be >= 1 and eval.limit >= 0, "
                f"got k={self.k}, batch_size={self.batch_size}, limit={self.limit}"
            )
        if self.greedy and self.k != 1:
            raise ConfigError(
                f"eval.greedy=true gives one answer per question; set eval.greedy=false for k={self.k}"
            )
