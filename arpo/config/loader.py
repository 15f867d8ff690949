"""The typed config tree: one dataclass per component, assembled here, loaded from YAML recipes
with dotted `key=value` overrides (OmegaConf structured configs).

A field may declare `metadata={"choices": (...)}`; values outside it are rejected by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from arpo.algo.config import AlgoConfig
from arpo.data.config import DataConfig
from arpo.errors import ConfigError
from arpo.eval.config import EvalConfig
from arpo.models.config import ModelConfig
from arpo.rewards.config import RewardConfig
from arpo.rollout.config import RolloutConfig
from arpo.tools.config import ToolsConfig
from arpo.trainer.config import TrainerConfig


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    run_dir: str = "runs/default"


def _section(cls: type, dotted: str) -> type | None:
    """The dataclass type at `dotted` inside `cls` (None when it is a leaf or does not exist)."""
    node = cls()
    for part in [p for p in dotted.split(".") if p]:
        node = getattr(node, part, None)
        if not dataclasses.is_dataclass(node):
            return None
    return type(node)


def _explain(exc: OmegaConfBaseException, source: str, schema: type) -> str:
    full_key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, ConfigKeyError):
        parent, _, leaf = full_key.rpartition(".")
        section = _section(schema, parent)
        valid = [f.name for f in dataclasses.fields(section)] if section else []
        hint = difflib.get_close_matches(leaf, valid, n=1)
        where = f"'{parent}'" if parent else "the top level"
        msg = f"{source}: unknown key '{full_key}'"
        if hint:
            msg += f" (did you mean '{(parent + '.') if parent else ''}{hint[0]}'?)"
        return msg + f"; valid keys of {where}: {', '.join(valid)}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{source}: key '{full_key}': {first}" if full_key else f"{source}: {first}"


def _check_choices(node: Any, prefix: str = "") -> None:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_choices(value, key + ".")
        elif "choices" in f.metadata and value not in f.metadata["choices"]:
            choices = ", ".join(repr(c) for c in f.metadata["choices"])
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {choices}")


def load_config(recipe: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML recipe, then `a.b=c` overrides; validated and typed."""
    base = OmegaConf.structured(Config)
    try:
        if recipe:
            if not os.path.isfile(recipe):
                raise ConfigError(f"recipe not found: {recipe}")
            try:
                with open(recipe) as f:
                    loaded = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ConfigError(f"{recipe}: not valid YAML: {str(e).splitlines()[0]}") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{recipe}: a recipe must be a YAML mapping of config keys")
            try:
                base = OmegaConf.merge(base, loaded)
            except OmegaConfBaseException as e:
                raise ConfigError(_explain(e, recipe, Config)) from None
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' must look like key=value (e.g. rollout.M=8)")
            try:
                base = OmegaConf.merge(base, OmegaConf.from_dotlist([item]))
            except OmegaConfBaseException as e:
                raise ConfigError(_explain(e, f"override '{item}'", Config)) from None
        cfg = OmegaConf.to_object(base)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e, recipe or "config", Config)) from None
    _check_choices(cfg)
    return cfg


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
