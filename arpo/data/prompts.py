"""System prompts and few-shot examples of the tool formats.

`ARPO_SYSTEM` is the system prompt of the ARPO authors' released RL data, with `\\boxed` spelled
correctly (their files carry a backspace character instead of `\\b`). The built-in prompts are
short, for small models, and each comes with one worked exchange showing the tool format.
"""

from __future__ import annotations

from collections.abc import Sequence

ARPO_SYSTEM = (
    "You are a helpful assistant that can solve the given question step by step with the help of the "
    "wikipedia search tool and python interpreter tool. Given a question, you need to first think about "
    "the reasoning process in the mind and then provide the answer. During thinking, you can invoke the "
    "wikipedia search tool to search and python interpreter tool to calculate the math problem for fact "
    "information about specific topics if needed. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags respectively, and the search query and result are "
    "enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> "
    "This is the reasoning process. </think> <search> search query here </search> <result> search result "
    "here </result> <think> This is the reasoning process. </think> <python> python code here </python> "
    "<result> python interpreter result here </result> <think> This is the reasoning process. </think> "
    "<answer> The final answer is \\[ \\boxed{answer here} \\] </answer>. In the last part of the answer, "
    "the final exact answer is enclosed within \\boxed{} with latex format."
)

PYTHON_SYSTEM = (
    "You are a helpful assistant that solves problems with a Python interpreter. To run code, write it "
    "between <python> and </python>; its printed output comes back between <result> and </result>. "
    "Always compute with Python, never in your head. Then give the final answer between <answer> and "
    "</answer>."
)
PYTHON_SHOT = (
    "What is 37 * 59?",
    "<python>print(37 * 59)</python>\n<result>\n2183\n</result>\n<answer>2183</answer>",
)

SEARCH_SYSTEM = (
    "You are a helpful assistant that answers questions with a search engine over an encyclopedia of "
    "facts you do not know. To search, write a query between <search> and </search>; the results come "
    "back between <result> and </result>. Search one fact at a time, as often as needed. Then give the "
    "final answer, just the name, between <answer> and </answer>."
)
SEARCH_SHOT = (
    "Where was the founder of Quillmark Ceramics born?",
    "<search>Quillmark Ceramics founder</search>\n<result>\nQuillmark Ceramics is a pottery company "
    "headquartered in Ostrava Vale. It was founded in 1931 by Edda Varnholt.\n</result>\n"
    "<search>Edda Varnholt</search>\n<result>\nEdda Varnholt is a chemist born in Tessaby in 1902. "
    "Edda Varnholt works for Quillmark Ceramics.\n</result>\n<answer>Tessaby</answer>",
)

SHOP_SYSTEM = (
    "You are a helpful shop assistant with two tools. To look up a price in the shop's catalogue, write "
    "the item between <search> and </search>. To run code, write it between <python> and </python>. "
    "Results come back between <result> and </result>. Look up the price first, then compute the total "
    "with Python, never in your head. Then give the final answer, just the number, between <answer> and "
    "</answer>."
)
# Two worked exchanges, each saying in a sentence what it read from a result before acting on it: the
# step after a result is then a reading of it, where ARPO's branching looks (measured in `shop.py`).
SHOP_SHOTS = (
    (
        "Item: copper lamp. How much do 37 of them cost?",
        "<search>copper lamp</search>\n<result>\n"
        "Page 1: copper lamp: A copper lamp costs 59 coins.\n"
        "Page 2: copper jar: A copper jar costs 23 coins.\n"
        "Page 3: velvet lamp: A velvet lamp costs 41 coins.\n"
        "</result>\nPage 1 is the copper lamp, at 59 coins each, so 37 of them cost 37 times 59.\n"
        "<python>print(37 * 59)</python>\n<result>\n2183\n</result>\nSo 37 copper lamps cost 2183 coins.\n"
        "<answer>2183</answer>",
    ),
    (
        "Item: maple clock. How much do 64 of them cost?",
        "<search>maple clock</search>\n<result>\n"
        "Page 1: maple clock: A maple clock costs 17 coins.\n"
        "Page 2: striped clock: A striped clock costs 83 coins.\n"
        "Page 3: maple mirror: A maple mirror costs 36 coins.\n"
        "</result>\nPage 1 is the maple clock, at 17 coins each, so 64 of them cost 64 times 17.\n"
        "<python>print(64 * 17)</python>\n<result>\n1088\n</result>\nSo 64 maple clocks cost 1088 coins.\n"
        "<answer>1088</answer>",
    ),
)


def chat(system: str | None, shots: Sequence[tuple[str, str]], question: str) -> list[dict]:
    """Messages: the system prompt, the worked exchanges (question, answer) in order, then the question."""
    messages = [{"role": "system", "content": system}] if system else []
    for shot_question, shot_answer in shots:
        messages += [
            {"role": "user", "content": shot_question},
            {"role": "assistant", "content": shot_answer},
        ]
    return messages + [{"role": "user", "content": question}]


DIRECT_SYSTEM = (
    "You are a helpful assistant. Solve the problem step by step, then give the final answer between "
    "<answer> and </answer>."
)


def wrap_question(style: str, question: str) -> list[dict]:
    """A plain question under `data.system_prompt` (arpo | python | search | shop | direct | none)."""
    system, shot = {
        "direct": (DIRECT_SYSTEM, ()),
        "arpo": (ARPO_SYSTEM, ()),
        "python": (PYTHON_SYSTEM, (PYTHON_SHOT,)),
        "search": (SEARCH_SYSTEM, (SEARCH_SHOT,)),
        "shop": (SHOP_SYSTEM, SHOP_SHOTS),
        "none": (None, ()),
    }[style]
    return chat(system, shot, question)
