"""`reward`: which reward function scores a trajectory, and the hierarchical reward's terms."""

from dataclasses import dataclass, field


@dataclass
class RewardConfig:
    # A built-in reward name (`task`, `arpo`, `f1`, `em`, `math`, `arith`, `multihop`), or
    # `path/to/file.py:function` for a user's reward in the arpo, verl or TRL convention.
    # `task` uses each example's own default (`extra["reward"]`, set by the data loader).
    name: str = "task"
    # The user function's convention: `auto` reads it from the signature; `arpo` is
    # f(text, ground_truth, extra), `verl` is compute_score(data_source, solution_str, ground_truth,
    # extra_info), `trl` is f(prompts, completions, **kwargs) -> list[float].
    style: str = field(default="auto", metadata={"choices": ("auto", "arpo", "verl", "trl")})
    # ARPO's hierarchical reward: bonus when both tools were used, penalty on bad format.
    multi_tool_bonus: float = 0.1
    format_penalty: float = -1.0
    # Accuracy of QA answers in the hierarchical reward (the official code trains with F1).
    qa_metric: str = field(default="f1", metadata={"choices": ("f1", "em")})
    # The official format check also demands paired <think></think> tags.
    require_think: bool = True
    # Passed to a user's reward function as keyword arguments.
    kwargs: dict = field(default_factory=dict)
