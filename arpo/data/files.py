"""Reading dataset files: verl/ARPO rows (`data_source`, `prompt` messages, `ability`,
`reward_model.ground_truth`, `extra_info`) from parquet or JSONL, unchanged, and plain
question/answer JSONL (the ARPO eval sets' `eval/<set>/test.jsonl`), wrapped in a system prompt.

A question/answer row's question is `question` (or `problem`, `Question`); its `answer` is a
string or a list of acceptable strings. A GSM8K-style worked answer keeps what follows `####`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from arpo.config.data import DataConfig
from arpo.data.example import DataError, Example
from arpo.data.prompts import wrap_question
from arpo.data.sources import ability_of, default_reward

VERL_COLUMNS = ("data_source", "prompt", "reward_model")
QUESTION_KEYS = ("question", "problem", "Question")


def _read_parquet(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:
        raise DataError(f"{path}: not a readable parquet file: {str(e).splitlines()[0]}") from None
    return table.to_pylist()


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: line {n}: not valid UTF-8 (byte {e.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {n}: expected a JSON object per line")
            rows.append(row)
    return rows


def read_rows(path: str) -> list[dict]:
    if path.endswith(".parquet"):
        rows = _read_parquet(path)
    elif path.endswith(".jsonl"):
        rows = _read_jsonl(path)
    else:
        raise DataError(f"{path}: unsupported file type; use .parquet or .jsonl")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _source_name(path: str) -> str:
    """`eval/<set>/test.jsonl` -> `<set>`; any other file -> its name without extension."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(os.path.abspath(path))) if stem == "test" else stem


def _check_messages(prompt: Any, where: str) -> list[dict]:
    ok = (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt
        )
    )
    if not ok:
        raise DataError(f"{where}: column 'prompt' must be a non-empty list of {{role, content}} messages")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _verl_example(row: dict, where: str, index: int, cfg: DataConfig) -> Example:
    for column in VERL_COLUMNS:
        if column not in row:
            raise DataError(f"{where}: missing column '{column}'")
    reward_model = row["reward_model"]
    if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
        raise DataError(f"{where}: missing column 'reward_model.ground_truth'")
    messages = _check_messages(row["prompt"], where)
    source = str(row["data_source"])
    ability = ability_of(source, row.get("ability"), cfg.ability)
    extra = dict(row.get("extra_info") or {})
    extra.setdefault("index", index)
    extra.update(ability=ability, reward=default_reward(ability, messages))
    return Example(messages, reward_model["ground_truth"], source, extra)


def _gsm8k_final(answer: Any) -> Any:
    if isinstance(answer, str) and "####" in answer:
        return answer.rsplit("####", 1)[1].strip().replace(",", "")
    return answer


def _qa_example(row: dict, where: str, index: int, source: str, cfg: DataConfig) -> Example:
    key = next((k for k in QUESTION_KEYS if k in row), None)
    if key is None:
        raise DataError(f"{where}: missing column 'question'")
    if "answer" not in row:
        raise DataError(f"{where}: missing column 'answer'")
    source = str(row.get("data_source", source))
    ability = ability_of(source, row.get("ability"), cfg.ability)
    messages = wrap_question(cfg.prompt_style(), str(row[key]))
    extra = {
        "index": index,
        "question": row[key],
        "ability": ability,
        "reward": default_reward(ability, messages),
    }
    return Example(messages, _gsm8k_final(row["answer"]), source, extra)


def read_examples(path: str, cfg: DataConfig) -> list[Example]:
    """Every row of a dataset file as an Example; the first row decides the file's form."""
    rows = read_rows(path)
    verl = "prompt" in rows[0]
    source = _source_name(path)
    examples = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i}"
        if verl:
            examples.append(_verl_example(row, where, i, cfg))
        else:
            examples.append(_qa_example(row, where, i, source, cfg))
    return examples
