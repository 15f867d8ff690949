import threading

import math_verify
import pytest

from arpo.config import load_config
from arpo.config.reward import RewardConfig
from arpo.errors import ConfigError
from arpo.rewards import (
    RewardError,
    arith_reward,
    arpo_format_error,
    arpo_reward,
    exact_match,
    final_answer,
    load_reward,
    math_equal,
    token_f1,
    tools_used,
)

BS = "\x08"  # ARPO's released prompt writes \boxed as backspace + "oxed"


def arpo_text(answer="\\boxed{42}", python=False, search=False, think=True):
    parts = ["<think> plan </think>" if think else ""]
    if python:
        parts.append("<python>print(6 * 7)</python><result>\n42\n</result>")
    if search:
        parts.append("<search>answer to everything</search><result>Page 1: 42</result>")
    parts.append(f"<answer> The final answer is \\[ {answer} \\] </answer>")
    return " ".join(parts)


# --- answer extraction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>\\boxed{42}</answer>", "42"),
        (f"<answer>\\[ {BS}oxed{{42}} \\]</answer>", "42"),  # the backspace quirk
        ("<answer> Paris </answer>", "Paris"),  # no \boxed
        ("<answer>\\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}"),  # nested braces
        ("<answer>\\boxed{1} then \\boxed{2}</answer>", "2"),  # last box wins
        ("<answer>first</answer> <answer>second</answer>", "second"),
        ("reasoning <answer>2183", "2183"),  # unclosed at EOS
        ("no tags at all", None),
        ("<search>q</search><result><answer>leak</answer></result>", None),  # tool output is not an answer
    ],
)
def test_final_answer(text, expected):
    assert final_answer(text) == expected


def test_tools_used_reads_tags_hermes_and_rollout_record():
    assert tools_used(arpo_text(python=True, search=True)) == {"python", "search"}
    assert tools_used("<python>print(1)") == set()  # unclosed: not a call
    hermes = (
        '<tool_call>{"name": "search", "arguments": {"query": "x"}}</tool_call><tool_call>{bad</tool_call>'
    )
    assert tools_used(hermes) == {"search"}
    assert tools_used("no calls", {"tools_used": ["python"]}) == {"python"}


# --- ARPO's format check ---------------------------------------------------------------------------


def test_arpo_format_accepts_well_formed_and_backspace_box():
    assert arpo_format_error(arpo_text(python=True, search=True)) is None
    assert arpo_format_error(arpo_text(answer=f"{BS}oxed{{42}}")) is None


@pytest.mark.parametrize(
    "text, reason",
    [
        (arpo_text(think=False), "<think>"),
        ("<think> a </think> <think> b <answer>\\boxed{1}</answer>", "not paired"),
        ("<think> a </think> <answer>\\boxed{1}</answer><answer>\\boxed{1}</answer>", "exactly one"),
        ("<think> a </think> <answer>\\boxed{1}", "exactly one"),
        ("<think> a </think> <python>print(1)</python> <answer>\\boxed{1}</answer>", "incomplete"),
        (
            "<think> a </think> <search>q <result>r</result></search> <answer>\\boxed{1}</answer>",
            "wrong order",
        ),
        ("<think> a </think> </answer>\\boxed{1}<answer>", "before"),
        (arpo_text(answer="42"), "boxed"),
        (arpo_text(answer="\\boxed{42"), "boxed"),
    ],
)
def test_arpo_format_rejects(text, reason):
    why = arpo_format_error(text)
    assert why is not None and reason in why


def test_arpo_format_think_optional():
    assert arpo_format_error(arpo_text(think=False), require_think=False) is None


# --- QA metrics ----------------------------------------------------------------------------------


def test_token_f1_known_values():
    # "eiffel tower" vs "eiffel tower in paris": precision 1, recall 1/2 -> F1 2/3
    assert token_f1("The Eiffel Tower", "Eiffel Tower in Paris") == pytest.approx(2 / 3)
    assert token_f1("Eiffel Tower!", "the eiffel tower") == 1.0
    assert token_f1("London", "Paris") == 0.0
    # a list of acceptable answers: the best one counts
    assert token_f1("New York City", ["NYC", "New York", "Big Apple"]) == pytest.approx(0.8)
    assert token_f1("no", "no way") == 0.0  # yes/no: no partial credit
    assert token_f1("yes", ["YES."]) == 1.0


def test_exact_match_normalises_and_takes_lists():
    assert exact_match("The  Big Apple!", "big apple") == 1.0
    assert exact_match("Big Apple", ["NYC", "the big apple"]) == 1.0
    assert exact_match("Big Apple pie", ["NYC", "big apple"]) == 0.0


# --- math equivalence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pred, gold, equal",
    [
        ("0.5", "\\frac{1}{2}", True),
        ("\\dfrac{1}{2}", "0.5", True),
        ("-6+3\\sqrt3", "3\\sqrt{3} - 6", True),
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("7.69", "7.69\\%", True),
        ("2,183", "2183", True),
        ("407/1580", "\\frac{407}{1580}", True),
        ("0.51", "\\frac{1}{2}", False),
        ("(3, \\pi/3)", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
        ("13", ["12", "13"], True),
        (None, "1", False),
        ("\\frac{", "1", False),  # garbage parses to nothing: not equal, no exception
    ],
)
def test_math_equal(pred, gold, equal):
    assert math_equal(pred, gold) is equal


def test_math_equal_works_off_the_main_thread():
    out = []
    t = threading.Thread(target=lambda: out.append((math_equal("0.5", "\\frac{1}{2}"), math_equal("1", "2"))))
    t.start()
    t.join()
    assert out == [(True, False)]


def test_math_verify_crash_scores_zero(monkeypatch):
    def boom(*args, **kwargs):
        raise TimeoutError("sympy took too long")

    monkeypatch.setattr(math_verify, "parse", boom)
    assert math_equal("0.5", "\\frac{1}{2}") is False
    assert math_equal("2", "2") is True  # identical strings need no parser
    assert arpo_reward(arpo_text("\\boxed{0.5}"), "1/2", {"ability": "math"})["score"] == 0.0


# --- ARPO hierarchical reward --------------------------------------------------------------------


def test_arpo_reward_levels():
    qa, math = {"ability": "qa"}, {"ability": "math"}
    assert arpo_reward(arpo_text(think=False), "42", qa)["score"] == -1.0
    assert arpo_reward(arpo_text(answer="42"), "42", qa)["score"] == -1.0
    assert arpo_reward(arpo_text(think=False), "42", qa, format_penalty=-0.5)["score"] == -0.5
    assert arpo_reward(arpo_text(), "42", qa)["score"] == 1.0
    assert arpo_reward(arpo_text(), "43", qa)["score"] == 0.0
    assert arpo_reward(arpo_text(python=True), "42", qa)["score"] == 1.0  # one tool: no bonus
    both = arpo_reward(arpo_text(python=True, search=True), "42", qa)
    assert both["score"] == pytest.approx(1.1) and both["bonus"] == pytest.approx(0.1)
    assert arpo_reward(arpo_text(python=True, search=True), "42", qa, multi_tool_bonus=0.3)["score"] == 1.3
    assert arpo_reward(arpo_text(python=True, search=True), "41", qa)["score"] == 0.0  # wrong: no bonus
    # math ability: equivalence, not token overlap
    assert arpo_reward(arpo_text("\\boxed{0.5}"), "\\frac{1}{2}", math)["score"] == 1.0
    assert arpo_reward(arpo_text("\\boxed{0.5}"), "\\frac{1}{2}", qa)["score"] == 0.0


def test_arpo_reward_partial_f1_em_and_backspace_quirk():
    text = arpo_text(f"{BS}oxed{{Eiffel Tower}}", python=True, search=True)
    r = arpo_reward(text, ["Eiffel Tower in Paris"], {"ability": "qa"})
    assert r["answer"] == "Eiffel Tower" and r["score"] == pytest.approx(2 / 3 + 0.1)
    assert arpo_reward(text, "Eiffel Tower in Paris", {"ability": "qa"}, qa_metric="em")["score"] == 0.0


# --- arith checker -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, score",
    [
        ("<python>print(37 * 59)</python><result>\n2183\n</result><answer>2183</answer>", 1.0),
        ("<answer> 2,183. </answer>", 1.0),
        ("<answer>\\boxed{2183}</answer>", 1.0),
        ("<answer>2184</answer>", 0.0),
        ("<answer>2183 or 2184</answer>", 0.0),
        ("<answer>about two thousand</answer>", 0.0),
        ("The product is 2183.", 0.0),  # no <answer>
    ],
)
def test_arith_reward(text, score):
    assert arith_reward(text, "2183", {})["score"] == score


# --- loading -------------------------------------------------------------------------------------


def test_load_builtin_rewards_return_dicts():
    assert load_reward(RewardConfig(name="f1"))("<answer>Paris</answer>", ["Paris"], {})["score"] == 1.0
    assert load_reward(RewardConfig(name="em"))("<answer>Paris, France</answer>", "Paris", {})["score"] == 0.0
    assert load_reward(RewardConfig(name="math"))("<answer>\\boxed{0.5}</answer>", "1/2", {})["score"] == 1.0
    assert load_reward(RewardConfig(name="multihop"))("<answer>Tessaby</answer>", "Tessaby", {})["acc"] == 1.0
    arpo = load_reward(RewardConfig(name="arpo", require_think=False, format_penalty=-2.0))
    assert arpo(arpo_text(think=False), "42", {})["score"] == 1.0
    assert arpo("garbage", "42", {})["score"] == -2.0


def test_task_reward_dispatches_on_each_example():
    task = load_reward(RewardConfig())
    assert task("<answer>2183</answer>", "2183", {"reward": "arith"})["score"] == 1.0
    assert task("<answer>2183</answer>", "2183", {"reward": "arpo", "ability": "math"})["score"] == -1.0
    with pytest.raises(RewardError, match="extra\\['reward'\\]"):
        task("<answer>1</answer>", "1", {})


def test_user_reward_from_file(tmp_path):
    f = tmp_path / "my_reward.py"
    f.write_text(
        "def length(text, ground_truth, extra, scale=1.0):\n"
        "    return scale * len(text)\n"
        "def detailed(text, ground_truth, extra):\n"
        "    return {'score': int(text == ground_truth), 'why': 'exact'}\n"
        "def broken(text, ground_truth, extra):\n"
        "    return 'high'\n"
        "def no_score(text, ground_truth, extra):\n"
        "    return {'value': 1}\n"
    )
    assert load_reward(RewardConfig(name=f"{f}:length", kwargs={"scale": 0.5}))("abcd", None, {}) == {
        "score": 2.0
    }
    assert load_reward(RewardConfig(name=f"{f}:detailed"))("x", "x", {}) == {"score": 1.0, "why": "exact"}
    with pytest.raises(RewardError, match="returned str"):
        load_reward(RewardConfig(name=f"{f}:broken"))("x", "x", {})
    with pytest.raises(RewardError, match="without a 'score' key"):
        load_reward(RewardConfig(name=f"{f}:no_score"))("x", "x", {})
    with pytest.raises(RewardError, match="has no 'missing'.*detailed"):
        load_reward(RewardConfig(name=f"{f}:missing"))
    # a user reward may also be an example's default
    task = load_reward(RewardConfig())
    assert task("ab", None, {"reward": f"{f}:length"})["score"] == 2.0


def test_user_reward_errors_are_one_line(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(RewardError) as e:
        load_reward(RewardConfig(name=f"{missing}:f"))
    assert str(e.value) == f"reward.name: file not found: {missing}"
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_anywhere\n")
    with pytest.raises(RewardError, match="cannot import .*: ModuleNotFoundError") as e:
        load_reward(RewardConfig(name=f"{bad}:f"))
    assert "\n" not in str(e.value)
    with pytest.raises(RewardError, match="unknown reward 'f2'.*path/to/file.py:function"):
        load_reward(RewardConfig(name="f2"))


def test_reward_config_choices():
    assert load_config(None, ["reward.qa_metric=em"]).reward.qa_metric == "em"
    with pytest.raises(ConfigError, match="reward.qa_metric"):
        load_config(None, ["reward.qa_metric=bleu"])


# --- reward plug-ins: verl and TRL functions as they are ---------------------------------------

VERL_AND_TRL = """
def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    # verl's convention, unchanged: the answer is the text after "####"
    answer = solution_str.split("####")[-1].strip()
    return 1.0 if (data_source == "openai/gsm8k" and answer == ground_truth) else 0.0

def accuracy_reward(completions, solution, **kwargs):
    # TRL's conversational convention, unchanged
    return [float(c[0]["content"].strip().endswith(s)) for c, s in zip(completions, solution)]

def with_prompts(prompts, completions, ground_truth, **kwargs):
    return [float(p[-1]["content"] == "q?" and c[0]["content"] == g)
            for p, c, g in zip(prompts, completions, ground_truth)]

def two_args(a, b):
    return 1.0

def raises(text, ground_truth, extra):
    raise ValueError("cannot parse " + text)

def trl_none(prompts, completions, **kwargs):
    return [None]

def trl_two(prompts, completions, **kwargs):
    return [1.0, 0.0]
"""


@pytest.fixture
def plugins_file(tmp_path):
    f = tmp_path / "plugins.py"
    f.write_text(VERL_AND_TRL)
    return f


def test_verl_compute_score_unchanged(plugins_file):
    fn = load_reward(RewardConfig(name=f"{plugins_file}:compute_score"))
    extra = {"data_source": "openai/gsm8k", "index": 3}
    assert fn("so #### 42", "42", extra) == {"score": 1.0}
    assert fn("so #### 41", "42", extra) == {"score": 0.0}


def test_trl_reward_unchanged(plugins_file):
    fn = load_reward(RewardConfig(name=f"{plugins_file}:accuracy_reward"))
    assert fn("the answer is 42", "42", {})["score"] == 1.0
    assert fn("the answer is 41", "42", {})["score"] == 0.0
    prompted = load_reward(RewardConfig(name=f"{plugins_file}:with_prompts"))
    extra = {"prompt": [{"role": "user", "content": "q?"}]}
    assert prompted("7", "7", extra)["score"] == 1.0


def test_reward_style_named_or_refused(plugins_file):
    with pytest.raises(RewardError, match="does not fit the arpo convention.*verl: compute_score") as e:
        load_reward(RewardConfig(name=f"{plugins_file}:two_args"))
    assert "\n" not in str(e.value)
    with pytest.raises(RewardError, match="does not fit the trl convention"):
        load_reward(RewardConfig(name=f"{plugins_file}:compute_score", style="trl"))
    fn = load_reward(RewardConfig(name=f"{plugins_file}:compute_score", style="verl"))
    assert fn("#### 1", "1", {"data_source": "openai/gsm8k"})["score"] == 1.0


def test_reward_that_raises_is_a_counted_error(plugins_file, caplog):
    fn = load_reward(RewardConfig(name=f"{plugins_file}:raises"))
    out = fn("x", "1", {})
    assert out["score"] == 0.0 and out["reward_error"] == "ValueError: cannot parse x"
    assert "reward_error" in load_reward(RewardConfig(name=f"{plugins_file}:trl_none"))("x", "1", {})
    assert any("raised" in r.getMessage() for r in caplog.records)
    # a result of the wrong shape is a contract violation, not a counted error
    with pytest.raises(RewardError, match="expected a list of one value"):
        load_reward(RewardConfig(name=f"{plugins_file}:trl_two"))("x", "1", {})


@pytest.mark.parametrize(
    "prediction, truth, f1, em",
    [
        ("约161.27元", "161.27元", 0.8, 0.0),  # one extra character of three: not an exact match
        ("161.27元。", "161.27元", 1.0, 1.0),  # CJK punctuation is stripped
        ("《红楼梦》", "红楼梦", 1.0, 1.0),
        ("北京市", "北京", 0.8, 0.0),
        ("曹雪芹 wrote it", "曹雪芹", 0.75, 0.0),
        ("the Eiffel Tower", "Eiffel tower", 1.0, 1.0),  # English unchanged
    ],
)
def test_cjk_answers_tokenise_by_character(prediction, truth, f1, em):
    assert token_f1(prediction, truth) == pytest.approx(f1)
    assert exact_match(prediction, truth) == em
