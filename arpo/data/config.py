from dataclasses import dataclass, field


@dataclass
class DataConfig:
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
    # System prompt that wraps plain question/answer files: ARPO's (search + python, \boxed{}
    # answer), the built-in `arith` (python) or `multihop` (search) prompt, a tool-free prompt
    # asking for an `<answer>` (direct), or none.
    system_prompt: str = field(
        default="arpo", metadata={"choices": ("arpo", "python", "search", "direct", "none")}
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
