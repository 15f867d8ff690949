import subprocess
import sys

from arpo.cli import main
from tests.conftest import ROOT


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "arpo", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_subcommands():
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("train", "eval", "config"):
        assert cmd in out.stdout


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "rollout.M=5", "rollout.N=5"]) == 0
    text = capsys.readouterr().out
    assert "M: 5" in text and "'N': 5" in text


def test_bad_input_is_one_line_without_traceback(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  betta: 0.3\n")
    out = run_cli("train", str(recipe))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "rollout.betta" in lines[0] and "did you mean 'rollout.beta'" in lines[0]
    out = run_cli("train", "model.path=/no/such/model", "trainer.steps=1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "model path not found: /no/such/model" in out.stderr
    out = run_cli("train", "notarecipe")
    assert out.returncode == 2 and "unexpected argument 'notarecipe'" in out.stderr
    out = run_cli("config", "configs/nosuch.yaml")
    assert out.returncode == 2
    assert "recipe not found: configs/nosuch.yaml (shipped recipes: default," in out.stderr


def test_shipped_recipes_resolve_from_any_directory(tmp_path):
    out = run_cli("config", "configs/qwen2.5-7b-arpo.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Qwen2.5-7B" in out.stdout
