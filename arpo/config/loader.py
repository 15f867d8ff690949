"""Loading the config tree: defaults, then a YAML recipe, then dotted `key=value` overrides
(OmegaConf structured configs), then validation, so a bad recipe fails before any heavy work.

A field may declare `metadata={"choices": (...)}`; values outside it are rejected by name. A section
with a `validate()` method checks its own numbers there; the loader calls every one of them.
A field declaring `metadata={"secret": True}` (an API key, headers) is never written out: every
saved or printed config shows it as REDACTED, and a config read back treats REDACTED as unset.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from arpo.config.root import Config
from arpo.errors import ConfigError

REDACTED = "REDACTED"

# Recipes shipped inside the package (`arpo/configs/`), reachable from any directory and any install.
RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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


def validate(node: Any, prefix: str = "") -> None:
    """Choices of every field, then each section's own `validate()`, innermost sections first.
    `prefix` names the section in messages (`"rollout."` for a `RolloutConfig`)."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
        elif "choices" in f.metadata and value not in f.metadata["choices"]:
            choices = ", ".join(repr(c) for c in f.metadata["choices"])
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {choices}")
    if hasattr(node, "validate"):
        node.validate()


def recipe_path(recipe: str) -> str:
    """`recipe` itself when it is a file; else the shipped recipe of that name (`default`,
    `default.yaml` or `configs/default.yaml` all name `arpo/configs/default.yaml`)."""
    if os.path.isfile(recipe):
        return recipe
    name = os.path.basename(recipe)
    shipped = os.path.join(RECIPES, name if name.endswith((".yaml", ".yml")) else name + ".yaml")
    if os.path.isfile(shipped):
        return shipped
    names = ", ".join(sorted(os.path.splitext(n)[0] for n in os.listdir(RECIPES) if n.endswith(".yaml")))
    raise ConfigError(f"recipe not found: {recipe} (shipped recipes: {names})")


def _recipe_layers(recipe: str, seen: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """(path, mapping) of a recipe and of the recipes it builds on, base first: a recipe's `base:`
    names another recipe (relative to its own folder) whose keys it overrides."""
    if not os.path.isfile(recipe):
        raise ConfigError(f"recipe not found: {recipe}")
    if os.path.abspath(recipe) in seen:
        raise ConfigError(f"{recipe}: recipes name each other as base in a cycle")
    try:
        with open(recipe) as f:
            loaded = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{recipe}: not valid YAML: {str(e).splitlines()[0]}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{recipe}: a recipe must be a YAML mapping of config keys")
    base = loaded.pop("base", None)
    if base is None:
        return [(recipe, loaded)]
    below = _recipe_layers(os.path.join(os.path.dirname(recipe), str(base)), (*seen, os.path.abspath(recipe)))
    return [*below, (recipe, loaded)]


def load_config(
    recipe: str | None = None, overrides: list[str] | tuple[str, ...] = (), inherit: dict | None = None
) -> Config:
    """Defaults, then `inherit` (values taken from elsewhere, e.g. a checkpoint's config), then the
    YAML recipe (after the recipes it builds on), then `a.b=c` overrides; validated and typed. String
    values may refer to other keys: `${data.root}/arpo/rl/x.parquet`."""
    base = OmegaConf.structured(Config)
    try:
        if inherit:
            base = OmegaConf.merge(base, inherit)
        for path, layer in _recipe_layers(recipe_path(recipe)) if recipe else []:
            try:
                base = OmegaConf.merge(base, layer)
            except OmegaConfBaseException as e:
                raise ConfigError(_explain(e, path, Config)) from None
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
    validate(cfg)
    return _secrets(cfg, lambda value: None if value == REDACTED else value)  # a saved config read back


def _secrets(node: Any, replace) -> Any:
    """A copy of a config node with each non-empty secret value `v` replaced by `replace(v)`
    (None: unset, the field's default or no dict entry)."""
    changes = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = _secrets(value, replace)
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            changes[f.name] = [_secrets(v, replace) for v in value]  # e.g. tools.mcp.servers
        elif f.metadata.get("secret") and value:
            if isinstance(value, dict):
                changes[f.name] = {k: replace(v) for k, v in value.items() if replace(v) is not None}
            else:
                changes[f.name] = replace(value) if replace(value) is not None else f.default
    return dataclasses.replace(node, **changes)


def redacted(cfg: Config) -> Config:
    """The config as it may be written anywhere (files, checkpoints, wandb, the terminal)."""
    return _secrets(cfg, lambda value: REDACTED)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(redacted(cfg)))


def save_config(cfg: Config, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
