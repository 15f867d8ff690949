import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arpo.config import load_config
from arpo.config.data import DataConfig
from arpo.config.reward import RewardConfig
from arpo.data import (
    ARPO_SYSTEM,
    PYTHON_SYSTEM,
    SEARCH_SYSTEM,
    SHOP_SYSTEM,
    DataError,
    build_world,
    corpus_documents,
    load_dataset,
    multihop_corpus,
    questions,
)
from arpo.errors import ConfigError
from arpo.rewards import load_reward


@pytest.fixture
def cfg(tmp_path):
    return DataConfig(train_size=300, val_size=40, multihop_people=120, cache_dir=str(tmp_path / "cache"))


TASK_REWARD = load_reward(RewardConfig())


def _operands(example):
    return tuple(
        int(x) for x in re.fullmatch(r"What is (\d+) \* (\d+)\?", example.extra["question"]).groups()
    )


# --- arith ---------------------------------------------------------------------------------------


def test_arith_is_deterministic_and_splits_do_not_overlap(cfg):
    train, val = load_dataset("arith", "train", cfg), load_dataset("arith", "val", cfg)
    assert (len(train), len(val)) == (300, 40)
    assert [e.extra["question"] for e in train] == [
        e.extra["question"] for e in load_dataset("arith", "train", cfg)
    ]
    cfg2 = DataConfig(**{**vars(cfg), "seed": 1})
    assert [e.extra["question"] for e in train] != [
        e.extra["question"] for e in load_dataset("arith", "train", cfg2)
    ]
    canon = lambda ex: {tuple(sorted(_operands(e))) for e in ex}  # noqa: E731  (a*b and b*a: one problem)
    tr, va = canon(train), canon(val)
    assert len(tr) == 300 and len(va) == 40 and not tr & va
    # a bigger training set keeps the same validation set
    cfg3 = DataConfig(**{**vars(cfg), "train_size": 600})
    assert canon(load_dataset("arith", "val", cfg3)) == va


def test_arith_problems_and_checker(cfg):
    for e in load_dataset("arith", "train", cfg):
        a, b = _operands(e)
        assert 10 <= a <= 99 and 10 <= b <= 99 and a % 10 and b % 10 and {a, b} != {37, 59}
        assert e.ground_truth == str(a * b) and e.data_source == "arith" and e.extra["reward"] == "arith"
        right = f"<python>print({a} * {b})</python><result>\n{a * b}\n</result><answer>{a * b}</answer>"
        assert TASK_REWARD(right, e.ground_truth, e.extra)["score"] == 1.0
        assert TASK_REWARD(f"<answer>{a * b + 1}</answer>", e.ground_truth, e.extra)["score"] == 0.0


def test_arith_prompt_has_one_worked_tool_example(cfg):
    msgs = load_dataset("arith", "val", cfg)[0].prompt_messages
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == PYTHON_SYSTEM
    assert (
        msgs[2]["content"]
        == "<python>print(37 * 59)</python>\n<result>\n2183\n</result>\n<answer>2183</answer>"
    )
    assert TASK_REWARD(msgs[2]["content"], "2183", {"reward": "arith"})["score"] == 1.0


def test_arith_mix_and_errors(cfg):
    cfg.arith_mix = ["3x2", "2x3"]
    sizes = {tuple(len(str(x)) for x in _operands(e)) for e in load_dataset("arith", "train", cfg)}
    assert sizes == {(3, 2), (2, 3)}
    cfg.arith_mix = ["2by2"]
    with pytest.raises(DataError, match="'2by2' is not like '2x2'"):
        load_dataset("arith", "train", cfg)
    cfg.arith_mix, cfg.train_size = ["1x1"], 100  # only 36 distinct one-digit products exist
    with pytest.raises(DataError, match="found only"):
        load_dataset("arith", "train", cfg)


# --- multihop ------------------------------------------------------------------------------------


def test_multihop_deterministic_split_and_corpus(cfg):
    cfg.train_size = 200
    train, val = load_dataset("multihop", "train", cfg), load_dataset("multihop", "val", cfg)
    assert [(e.extra["question"], e.ground_truth) for e in train] == [
        (e.extra["question"], e.ground_truth) for e in load_dataset("multihop", "train", cfg)
    ]
    assert not {e.extra["question"] for e in train} & {e.extra["question"] for e in val}
    path = train[0].extra["search_corpus"]
    assert path == multihop_corpus(cfg) and path.startswith(cfg.cache_dir)
    docs = [json.loads(line) for line in open(path)]
    assert docs == corpus_documents(build_world(cfg.seed, cfg.multihop_people))
    assert len({d["id"] for d in docs}) == len(docs) and all(d["title"] and d["text"] for d in docs)
    assert train[0].prompt_messages[0]["content"] == SEARCH_SYSTEM
    e = val[0]
    assert TASK_REWARD(f"<answer>{e.ground_truth}</answer>", e.ground_truth, e.extra)["score"] == 1.0
    with pytest.raises(DataError, match="raise data.multihop_people"):
        load_dataset("multihop", "train", DataConfig(**{**vars(cfg), "train_size": 5000}))


def test_multihop_questions_need_two_searches():
    world = build_world(seed=3, n_people=60)
    docs = {d["title"]: d["text"] for d in corpus_documents(world)}
    qa = questions(world)
    assert len(qa) > 150 and len({q for q, _ in qa}) == len(qa)
    for q, answer in qa:
        first = [t for t in docs if re.search(rf"\b{t}\b", q)]
        assert len(first) == 1, q  # the question names exactly one entity
        hop1 = docs[first[0]]
        assert answer not in hop1, q  # the first page does not give the answer away ...
        bridges = [t for t in docs if re.search(rf"\b{t}\b", hop1) and t != first[0] and answer in docs[t]]
        assert bridges, q  # ... but names an entity whose page does


# --- files ---------------------------------------------------------------------------------------


def _verl_row(i, ability="qa", gt="Paris"):
    return {
        "data_source": "my_qa",
        "prompt": [{"role": "system", "content": ARPO_SYSTEM}, {"role": "user", "content": f"Q{i}?"}],
        "ability": ability,
        "reward_model": {"ground_truth": gt, "style": "rule"},
        "extra_info": {"index": 100 + i, "split": "train"},
    }


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_verl_jsonl_and_parquet_read_unchanged(tmp_path, cfg):
    rows = [_verl_row(0), _verl_row(1, "math", "\\frac{1}{2}")]
    for path in (_write_jsonl(tmp_path / "d.jsonl", rows), str(tmp_path / "d.parquet")):
        if path.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(rows), path)
        ex = load_dataset(path, "train", cfg)
        assert [e.prompt_messages for e in ex] == [r["prompt"] for r in rows]
        assert [e.ground_truth for e in ex] == ["Paris", "\\frac{1}{2}"]
        assert ex[1].extra == {"index": 101, "split": "train", "ability": "math", "reward": "arpo"}
        good = "<think> ok </think><answer>\\boxed{0.5}</answer>"
        assert TASK_REWARD(good, ex[1].ground_truth, ex[1].extra)["score"] == 1.0


def test_question_answer_jsonl_wrapped_in_system_prompt(tmp_path, cfg):
    path = _write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "Capital of France?", "answer": ["Paris", "City of Paris"]},
            {"question": "Q", "answer": "x"},
        ],
    )
    # data.system_prompt=auto: ARPO's prompt when training on a file, the task's when on a task
    assert load_dataset(path, "train", cfg)[0].prompt_messages[0]["content"] == PYTHON_SYSTEM  # arith
    cfg.train = str(path)
    ex = load_dataset(path, "train", cfg)
    assert ex[0].data_source == "qa" and ex[0].ground_truth == ["Paris", "City of Paris"]
    assert ex[0].prompt_messages == [
        {"role": "system", "content": ARPO_SYSTEM},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert ex[0].extra["reward"] == "arpo" and ex[0].extra["ability"] == "qa"
    cfg.system_prompt = "python"
    e = load_dataset(path, "train", cfg)[0]
    assert e.prompt_messages[0]["content"] == PYTHON_SYSTEM and len(e.prompt_messages) == 4
    assert e.extra["reward"] == "f1"
    assert TASK_REWARD("<answer>the city of Paris</answer>", e.ground_truth, e.extra)["score"] == 1.0
    cfg.system_prompt, cfg.ability = "none", "math"
    e = load_dataset(path, "train", cfg)[0]
    assert [m["role"] for m in e.prompt_messages] == ["user"] and e.extra["reward"] == "math"


def test_eval_folder_gsm8k_answers_and_val_cap(tmp_path, cfg):
    folder = tmp_path / "eval" / "gsm8k"
    folder.mkdir(parents=True)
    rows = [{"question": f"q{i}", "answer": f"work <<1+1=2>>\n#### 1,00{i}", "idx": i} for i in range(50)]
    _write_jsonl(folder / "test.jsonl", rows)
    train = load_dataset(str(folder), "train", cfg)
    assert len(train) == 50 and train[3].ground_truth == "1003" and train[3].data_source == "gsm8k"
    assert train[3].extra["ability"] == "math"
    val = load_dataset(str(folder), "val", cfg)
    assert len(val) == cfg.val_size == 40 and val == load_dataset(str(folder), "val", cfg)
    idx = [e.extra["index"] for e in val]
    assert idx == sorted(set(idx)) and idx != list(range(40))  # a spread sample in file order


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [{"prompt": [{"role": "user", "content": "q"}], "data_source": "s"}],
            "row 0: missing column 'reward_model'",
        ),
        (
            [
                {
                    "prompt": [{"role": "user", "content": "q"}],
                    "data_source": "s",
                    "reward_model": {"style": "rule"},
                }
            ],
            "row 0: missing column 'reward_model.ground_truth'",
        ),
        (
            [{"prompt": "q", "data_source": "s", "reward_model": {"ground_truth": "a"}}],
            "row 0: column 'prompt' must be",
        ),
        ([{"question": "q", "answer": "a"}, {"question": "q2"}], "row 1: missing column 'answer'"),
        ([{"query": "q", "answer": "a"}], "row 0: missing column 'question'"),
    ],
)
def test_malformed_jsonl_names_file_and_column(tmp_path, cfg, rows, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_dataset(path, "train", cfg)
    assert str(e.value).startswith(path) and message in str(e.value) and "\n" not in str(e.value)


def test_malformed_files(tmp_path, cfg):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": \n')
    with pytest.raises(DataError, match="bad.jsonl: line 2: not valid JSON"):
        load_dataset(str(bad), "train", cfg)
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(
        '{"question": "q", "answer": "a"}\n{"question": "caf\u00e9", "answer": "b"}\n'.encode("latin-1")
    )
    with pytest.raises(DataError, match=r"latin1.jsonl: line 2: not valid UTF-8 \(byte 18\)$"):
        load_dataset(str(latin1), "train", cfg)
    pqf = str(tmp_path / "no_gt.parquet")
    pq.write_table(
        pa.Table.from_pylist([{"data_source": "s", "prompt": [{"role": "user", "content": "q"}]}]), pqf
    )
    with pytest.raises(DataError, match="no_gt.parquet: row 0: missing column 'reward_model'"):
        load_dataset(pqf, "train", cfg)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a readable parquet file"):
        load_dataset(str(tmp_path / "junk.parquet"), "train", cfg)
    (tmp_path / "d.csv").write_text("question,answer\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_dataset(str(tmp_path / "d.csv"), "train", cfg)
    with pytest.raises(DataError, match="dataset not found: nothing_here.*arith, multihop"):
        load_dataset("nothing_here", "train", cfg)
    with pytest.raises(DataError, match="split must be"):
        load_dataset("arith", "test", cfg)


def test_data_config_choices():
    assert load_config(None, ["data.arith_mix=[2x2,3x2]"]).data.arith_mix == ["2x2", "3x2"]
    with pytest.raises(ConfigError, match="data.system_prompt"):
        load_config(None, ["data.system_prompt=chatty"])


# --- the ARPO authors' released files ------------------------------------------------------------


def test_arpo_train_10k(shared_data):
    path = os.path.join(shared_data, "arpo", "rl", "train_10k.parquet")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not present")
    ex = load_dataset(path, "train", DataConfig())
    assert len(ex) == 10_000
    assert sum(e.extra["ability"] == "math" for e in ex) == 5000
    assert all(e.extra["reward"] == "arpo" for e in ex)
    system = ex[0].prompt_messages[0]["content"]
    assert "\x08oxed{" in system and system.replace("\x08oxed", "\\boxed") == ARPO_SYSTEM  # quirk kept as is
    math_row = next(e for e in ex if e.extra["ability"] == "math" and e.ground_truth == "3\\sqrt{3} - 6")
    reply = "<think> r </think><python>print(3*3**.5-6)</python><result>-0.8</result>"
    reply += "<think> so </think><answer> The final answer is \\[ \x08oxed{-6+3\\sqrt{3}} \\] </answer>"
    assert TASK_REWARD(reply, math_row.ground_truth, math_row.extra)["score"] == 1.0
    qa_row = next(e for e in ex if e.extra["ability"] == "qa")
    reply = "<think> r </think><search>q</search><result>x</result>"
    reply += f"<answer>\\boxed{{{qa_row.ground_truth}}}</answer>"
    assert TASK_REWARD(reply, qa_row.ground_truth, qa_row.extra)["score"] == 1.0
    assert TASK_REWARD("I think it is 3.", qa_row.ground_truth, qa_row.extra)["score"] == -1.0


@pytest.mark.parametrize(
    "name, rows, ability",
    [
        ("gsm8k", 1319, "math"),
        ("math500", 500, "math"),
        ("aime24", 30, "math"),
        ("hotpotqa", 200, "qa"),
        ("2wiki", 200, "qa"),
        ("gaia", 103, "qa"),
    ],
)
def test_arpo_eval_sets(shared_data, name, rows, ability):
    folder = os.path.join(shared_data, "arpo", "eval", name)
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} not present")
    ex = load_dataset(folder, "train", DataConfig())
    assert len(ex) == rows and all(e.extra["ability"] == ability for e in ex)
    assert all(e.data_source == name and e.prompt_messages[-1]["content"] for e in ex)
    assert len(load_dataset(folder, "val", DataConfig(val_size=7))) == 7


def test_arpo_valid_sample_mixes_math_and_qa(shared_data):
    path = os.path.join(shared_data, "arpo", "rl", "valid.parquet")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not present")
    val = load_dataset(path, "val", DataConfig(val_size=64))
    kinds = [e.extra["ability"] for e in val]
    assert len(val) == 64 and 20 < kinds.count("math") < 50  # 100 of its 180 rows are math, sorted last


# --- shop ----------------------------------------------------------------------------------------


def test_shop_prices_come_from_the_catalogue_and_held_out_items_are_new(cfg):
    train, val = load_dataset("shop", "train", cfg), load_dataset("shop", "val", cfg)
    assert [e.ground_truth for e in train] == [e.ground_truth for e in load_dataset("shop", "train", cfg)]
    pattern = re.compile(r"Item: (\w+ \w+)\. How much do (\d+) of them cost\?")
    prices = {d["title"]: d["text"] for d in map(json.loads, open(train[0].extra["search_corpus"]))}
    items = {}
    for split, examples in (("train", train), ("val", val)):
        for e in examples:
            item, q = pattern.fullmatch(e.extra["question"]).groups()
            price = int(re.fullmatch(rf"A {item} costs (\d+) coins\.", prices[item]).group(1))
            assert int(e.ground_truth) == int(q) * price and price % 10 and int(q) % 10
            items.setdefault(split, set()).add(item)
    assert len(train) == 300 and len(val) == 40 and not items["train"] & items["val"]
    assert train[0].prompt_messages[0]["content"] == SHOP_SYSTEM
    e = val[0]
    assert TASK_REWARD(f"<answer>{e.ground_truth}</answer>", e.ground_truth, e.extra)["score"] == 1.0
    assert TASK_REWARD(f"<answer>{int(e.ground_truth) + 1}</answer>", e.ground_truth, e.extra)["score"] == 0.0


def test_shop_search_finds_the_item_first(cfg):
    from arpo.tools.search_bm25 import Bm25Backend

    val = load_dataset("shop", "val", cfg)
    search = Bm25Backend(val[0].extra["search_corpus"])
    for e in val[:10]:
        item = re.fullmatch(r"Item: (\w+ \w+)\. How much do \d+ of them cost\?", e.extra["question"]).group(1)
        assert search.search(item, 3)[0].startswith(f"{item}: A {item} costs")
