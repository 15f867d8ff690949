"""`model`: which policy to load (directory, GGUF file, packaged or tiny test model) and its dtype."""

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    # A Hugging Face directory, a .gguf file, a name shipped by a package (`smollm2-135m-instruct`),
    # or `tiny-llama` / `tiny-qwen2` / `tiny-qwen3` (random weights, for tests and smoke runs).
    path: str = "smollm2-135m-instruct"
    # Tokenizer location when it differs from `path` (empty: same as `path`).
    tokenizer: str = ""
    dtype: str = field(default="float32", metadata={"choices": ("float32", "bfloat16", "float16")})
    # Built-in tiny models only: seed of their random initialisation.
    seed: int = 0
