"""Entry point of `arpo train` (the training loop lands with the trainer issue)."""

from arpo.config import Config


def train(cfg: Config) -> None:
    from arpo.models import load_model, num_parameters

    model, tokenizer = load_model(cfg.model)
    print(f"loaded {cfg.model.path}: {num_parameters(model) / 1e6:.1f}M parameters, vocabulary {len(tokenizer)}")
    from arpo.errors import ArpoError

    raise ArpoError("trainer not implemented yet")
