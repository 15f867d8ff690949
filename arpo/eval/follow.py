"""Evaluating a checkpoint of this project the way it was trained. A checkpoint directory holds the
resolved config of its run (`config.yaml` beside `hf/`); when `model.path` names one, `arpo eval`
takes the agent's side of that config (the system prompt, the tools and their call format, the
reward) as the base under the user's recipe and overrides, and says which values it took. Any
of them given on the command line or in a recipe wins."""

from __future__ import annotations

import os

import yaml

from arpo import output
from arpo.config import Config, load_config
from arpo.config.loader import recipe_path

# The parts of a training config that decide how the agent is asked and scored.
FOLLOWED = {"data": ("system_prompt",), "tools": None, "reward": None}  # None: the whole section


def checkpoint_dir(model_path: str) -> str | None:
    """The checkpoint directory `model_path` points into (`.../step-N` or `.../step-N/hf`), or None
    for anything that is not a checkpoint of this project."""
    for candidate in (model_path, os.path.dirname(os.path.normpath(model_path))):
        if os.path.isfile(os.path.join(candidate, "config.yaml")) and os.path.isdir(
            os.path.join(candidate, "hf")
        ):
            return candidate
    return None


def followed_sections(checkpoint: str) -> dict:
    """The FOLLOWED part of the checkpoint's config, as a nested dict."""
    with open(os.path.join(checkpoint, "config.yaml")) as f:
        trained = yaml.safe_load(f) or {}
    base: dict = {}
    for section, keys in FOLLOWED.items():
        if section not in trained:
            continue
        values = trained[section]
        base[section] = dict(values) if keys is None else {k: values[k] for k in keys if k in values}
    return base


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def describe(base: dict, given: set[str], shown: tuple[str, ...]) -> str:
    """The followed values a person should know about (`shown` keys that `given` does not override)."""
    leaves = _leaves(base)
    return ", ".join(f"{k}={leaves[k]}" for k in shown if k in leaves and k not in given)


def _given(recipe: str | None, overrides: list[str]) -> set[str]:
    """Dotted keys the user set: in the recipe file or on the command line."""
    keys = {o.split("=", 1)[0] for o in overrides}
    if recipe:
        with open(recipe_path(recipe)) as f:
            keys |= set(_leaves(yaml.safe_load(f) or {}))
    return keys


def load_eval_config(recipe: str | None, overrides: list[str]) -> Config:
    """The config `arpo eval` runs with: the user's, over the checkpoint's agent settings when
    `model.path` is a checkpoint of this project."""
    cfg = load_config(recipe, overrides)
    checkpoint = checkpoint_dir(cfg.model.path)
    if checkpoint is None:
        return cfg
    base = followed_sections(checkpoint)
    cfg = load_config(recipe, overrides, inherit=base)
    cfg.model.path = os.path.join(checkpoint, "hf")
    shown = ("data.system_prompt", "tools.enabled", "tools.format", "reward.name", "reward.style")
    taken = describe(base, _given(recipe, overrides), shown)
    if taken:
        output.say(f"evaluating as trained ({checkpoint}/config.yaml): {taken}; a key=value override wins")
    return cfg
