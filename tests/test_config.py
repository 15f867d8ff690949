import pytest

from arpo.config import Config, load_config, save_config, to_yaml
from arpo.errors import ConfigError


def test_defaults_are_the_embedded_default():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.model.path == "smollm2-135m-instruct"
    assert cfg.data.train == "arith"


def test_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  M: 6\n  N: 3\nalgo:\n  attribution: hard\n")
    cfg = load_config(str(recipe), ["rollout.N=2", "trainer.lr=3e-6", "tools.enabled=[python,search]"])
    assert (cfg.rollout.M, cfg.rollout.N) == (6, 2)
    assert cfg.algo.attribution == "hard"
    assert cfg.trainer.lr == pytest.approx(3e-6)
    assert cfg.tools.enabled == ["python", "search"]


def test_unknown_key_names_key_and_choices(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["rollout.tua=0.3"])
    msg = str(e.value)
    assert "rollout.tua" in msg and "did you mean 'rollout.tau'" in msg and "alpha" in msg
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("trainer:\n  stpes: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(recipe))
    assert str(recipe) in str(e.value) and "trainer.stpes" in str(e.value) and "steps" in str(e.value)
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(None, ["modle.path=x"])


def test_wrong_type_and_bad_choice():
    with pytest.raises(ConfigError, match="rollout.M"):
        load_config(None, ["rollout.M=many"])
    with pytest.raises(ConfigError, match="choose one of 'threshold', 'sample'"):
        load_config(None, ["rollout.rule=coin"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["rollout.M"])


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(scalar))


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["rollout.M=12", "algo.eps_high=0.28"])
    path = tmp_path / "run" / "config.yaml"
    save_config(cfg, str(path))
    assert load_config(str(path)) == cfg
    assert "eps_high: 0.28" in to_yaml(cfg)


def test_shipped_recipes_load():
    import glob
    import os

    from tests.conftest import ROOT

    recipes = glob.glob(os.path.join(ROOT, "arpo", "configs", "*.yaml"))
    assert recipes, "arpo/configs/ ships no recipe"
    for r in recipes:
        load_config(r)


def test_mcp_server_headers_and_env_are_redacted_in_saved_configs():
    from arpo.config import to_yaml

    servers = (
        "tools.mcp.servers=[{name: s, url: 'http://127.0.0.1:1/mcp', headers: {Authorization: Bearer xyz}},"
        " {name: t, command: srv, env: {TOKEN: abc}}]"
    )
    cfg = load_config(None, [servers])
    saved = to_yaml(cfg)
    assert "xyz" not in saved and "abc" not in saved and saved.count("REDACTED") == 2
    assert cfg.tools.mcp.servers[0].headers == {"Authorization": "Bearer xyz"}  # the run itself keeps them
