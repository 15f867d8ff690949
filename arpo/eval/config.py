from dataclasses import dataclass


@dataclass
class EvalConfig:
    """`arpo eval`: benchmarks, sampling protocol and outputs."""

    # Comma-separated benchmarks: built-in tasks (arith, shop, multihop; their held-out split), .parquet /
    # .jsonl files, eval/<set> folders, or ARPO's sets by name (gsm8k, math500, aime24, hotpotqa,
    # 2wiki, webwalker, gaia), read from <repo>/../shared/data/arpo/eval/<name>. Empty: data.val.
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
