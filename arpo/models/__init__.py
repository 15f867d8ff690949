"""Loading policies (Hugging Face directories, GGUF files, packaged and tiny test models) and
exporting them."""

from arpo.config.model import ModelConfig
from arpo.models.export import export_hf
from arpo.models.loading import load_model, num_parameters, resolve
from arpo.models.tiny import tiny_model, tiny_tokenizer

__all__ = [
    "ModelConfig",
    "export_hf",
    "load_model",
    "num_parameters",
    "resolve",
    "tiny_model",
    "tiny_tokenizer",
]
