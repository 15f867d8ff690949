"""`data`: the training and held-out datasets (built-in tasks or files) and how prompts are made."""

import os
from dataclasses import dataclass, field

from arpo.errors import ConfigError

# The system prompt each built-in task asks its questions with.
TASK_SYSTEM_PROMPTS = {"arith": "python", "multihop": "search", "shop": "shop"}


@dataclass
class DataConfig:
    # Folder of downloaded data that recipes name as `${data.root}/...`: the ARPO authors' release
    # laid out as arpo/rl/*.parquet, arpo/search_cache.json, arpo/eval/<set>/test.jsonl (README:
    # "Recipes"). Default: the ARPO_DATA environment variable, else ./data.
    root: str = field(default_factory=lambda: os.environ.get("ARPO_DATA", "data"))
    # A built-in task (`arith`, `shop`, `multihop`), or a parquet/JSONL file (or `eval/<set>` folder holding
    # test.jsonl) in verl/ARPO or question/answer form.
    train: str = "arith"
    val: str = "arith"
    # Generated tasks: number of problems. Files: validation reads `val_size` rows drawn with
    # `seed`, in file order (0: all); a training file is always read whole.
    val_size: int = 64
    train_size: int = 2000
    prompts_per_step: int = 2
    max_prompt_tokens: int = 512
    seed: int = 0
    # System prompt that wraps plain question/answer files: ARPO's (search + python, \\boxed{}
    # answer), the built-in `arith` (python), `multihop` (search) or `shop` prompt, a tool-free prompt
    # asking for an `<answer>` (direct), or none. `auto`: the prompt of the built-in task trained on
    # (a model trained on `arith` is asked in its Python format), else ARPO's. The loader resolves
    # it, so saved configs record the prompt actually used.
    system_prompt: str = field(
        default="auto", metadata={"choices": ("auto", "arpo", "python", "search", "shop", "direct", "none")}
    )
    # Which accuracy a file's answers need: math equivalence or QA F1; auto reads the rows'
    # `ability`, else guesses from the data source's name (gsm8k, math500, aime24 -> math).
    ability: str = field(default="auto", metadata={"choices": ("auto", "math", "qa")})
    # arith: operand digit counts, drawn uniformly per problem ("2x2": 37 * 59, "3x2": 371 * 59).
    arith_mix: list[str] = field(default_factory=lambda: ["2x2"])
    # multihop: people in the generated world (about 3.25 questions each, 10% kept for validation).
    multihop_people: int = 800
    # Where generated files (the multihop and shop search corpora) are written.
    cache_dir: str = "runs/.cache"

    def prompt_style(self) -> str:
        """`system_prompt` with `auto` resolved."""
        if self.system_prompt == "auto":
            return TASK_SYSTEM_PROMPTS.get(self.train, "arpo")
        return self.system_prompt

    def validate(self) -> None:
        self.system_prompt = self.prompt_style()
        if self.prompts_per_step < 1:
            raise ConfigError(f"data.prompts_per_step must be >= 1, got {self.prompts_per_step}")
