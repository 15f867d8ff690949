"""The shipped recipes: each resolves through `arpo config` with `data.root` at the shared data, names
files that exist there, and the README's tables of the authors' hyperparameters say what the recipes
hold; a GRPO twin equals its ARPO recipe except N = M."""

import dataclasses
import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

from arpo.config import load_config
from arpo.data.loader import TASKS
from arpo.errors import ConfigError
from tests.conftest import ROOT

RECIPES = sorted(glob.glob(os.path.join(ROOT, "arpo", "configs", "*.yaml")))
REASONING = os.path.join(ROOT, "arpo", "configs", "qwen2.5-7b-arpo.yaml")
DEEPSEARCH = os.path.join(ROOT, "arpo", "configs", "qwen3-8b-arpo-deepsearch.yaml")
TWINS = {"qwen2.5-7b-grpo.yaml": REASONING, "qwen3-8b-grpo-deepsearch.yaml": DEEPSEARCH}


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_recipe_resolves_with_the_shared_data(recipe, shared_data, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "arpo", "config", recipe, f"data.root={shared_data}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    resolved = yaml.safe_load(out.stdout)
    assert "${" not in out.stdout
    files = [resolved["data"]["train"], resolved["data"]["val"], resolved["tools"]["search"]["cache"]]
    for path in files:
        if path and path not in TASKS:
            assert os.path.exists(path), path


def test_data_root_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("ARPO_DATA", "/data/arpo-release")
    cfg = load_config(REASONING)
    assert cfg.data.train == "/data/arpo-release/arpo/rl/train_10k.parquet"
    assert cfg.tools.search.cache == "/data/arpo-release/arpo/search_cache.json"
    monkeypatch.delenv("ARPO_DATA")
    assert load_config(REASONING).data.train == "data/arpo/rl/train_10k.parquet"


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_grpo_twin_is_its_arpo_recipe_with_n_equal_m(twin):
    grpo = load_config(os.path.join(ROOT, "arpo", "configs", twin))
    arpo = load_config(TWINS[twin])
    assert grpo.rollout.N == grpo.rollout.M == arpo.rollout.M > arpo.rollout.N
    assert dataclasses.replace(grpo, rollout=dataclasses.replace(grpo.rollout, N=arpo.rollout.N)) == arpo


def test_base_cycles_and_missing_bases_are_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(str(tmp_path / "c.yaml"))


def _readme_table(title: str) -> dict[str, str]:
    """`key -> recipe column` of the README table that follows the paragraph starting `title`."""
    text = open(os.path.join(ROOT, "README.md")).read()
    block = text[text.index(title) :].split("\n\n")[1]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([\w.]+)`", cells[0])
        if match:
            rows[match.group(1)] = cells[3]
    return rows


def _value(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _same(cell: str, value) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(cell) == float(value)
    return cell == str(value)


def test_readme_tables_are_true_to_the_recipes():
    reasoning = _readme_table("Reasoning (`configs/qwen2.5-7b-arpo.yaml`)")
    deepsearch = _readme_table("Deep search (`configs/qwen3-8b-arpo-deepsearch.yaml`)")
    assert len(reasoning) >= 25 and len(deepsearch) >= 3
    cfg, deep = load_config(REASONING), load_config(DEEPSEARCH)
    for key, cell in reasoning.items():
        assert _same(cell, _value(cfg, key)), (key, cell, _value(cfg, key))
        if key not in deepsearch:  # "the reasoning recipe except these keys"
            assert _value(deep, key) == _value(cfg, key), key
    for key, cell in deepsearch.items():
        assert _same(cell, _value(deep, key)), (key, cell, _value(deep, key))
