"""Every `arpo` command the README and `arpo --help` show is checked the way a user would meet it:
its recipe and overrides resolve (or, for an example of a bad input, fail with the message shown),
and the README's evaluation of a trained checkpoint runs as written on a tiny trained model."""

import os
import re
import shlex

import pytest

from arpo.cli import EPILOG, EVAL_ALIASES, _expand, _split
from arpo.config import load_config
from arpo.errors import ArpoError
from arpo.eval.follow import load_eval_config
from tests.conftest import ROOT

FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
# A YAML block whose first line is `# name.yaml` is a recipe the README asks the reader to write.
RECIPE_BLOCK = re.compile(r"^```yaml\n# ([\w.-]+\.ya?ml)\n(.*?)^```", re.S | re.M)


def _logical_lines(block: str) -> list[str]:
    return block.replace("\\\n", " ").splitlines()


def _arpo_args(line: str) -> list[str] | None:
    """The arguments after `arpo` (or `-m arpo`) on a shell line, comments and `$ ` prompt removed."""
    line = line.strip().removeprefix("$ ")
    words = shlex.split(line, comments=True)
    if words[:1] == ["arpo"]:
        return words[1:]
    for i in range(len(words) - 1):
        if words[i : i + 2] == ["-m", "arpo"]:
            return words[i + 2 :]
    return None


def documented_commands() -> list[tuple[str, list[str], str | None]]:
    """(where, arguments, expected error) of every documented command; placeholders skipped."""
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = [("README.md", b) for b in FENCE.findall(f.read())]
    blocks.append(("arpo --help", EPILOG))
    found = []
    for where, block in blocks:
        lines = _logical_lines(block)
        for i, line in enumerate(lines):
            args = _arpo_args(line) if line.strip() else None
            if not args or args[0] not in ("train", "eval", "config") or any("[" in a for a in args):
                continue
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            expected = (
                following.removeprefix("arpo: error: ") if following.startswith("arpo: error:") else None
            )
            found.append((where, args, expected))
    return found


COMMANDS = documented_commands()


def test_the_documentation_shows_commands():
    subcommands = {args[0] for _, args, _ in COMMANDS}
    assert subcommands >= {"train", "eval", "config"}, COMMANDS


@pytest.fixture
def readme_recipes(tmp_path, monkeypatch):
    """The recipes the README shows as files, written where its commands would find them."""
    with open(os.path.join(ROOT, "README.md")) as f:
        for name, body in RECIPE_BLOCK.findall(f.read()):
            (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("where, args, expected", COMMANDS, ids=[" ".join(c[1]) for c in COMMANDS])
def test_documented_command_resolves(where, args, expected, readme_recipes):
    command, rest = args[0], args[1:]
    recipe, overrides = _split(rest)

    def resolve():
        if command == "eval":
            return load_eval_config(recipe, _expand(overrides, EVAL_ALIASES))
        return load_config(recipe, overrides)

    if expected is None:
        resolve()
        return
    with pytest.raises(ArpoError) as e:
        resolve()
    shown = expected.rstrip(".").removesuffix("...").rstrip(", ")
    assert str(e.value).startswith(shown), f"{where}: shows {expected!r}, says {e.value}"


def _readme_checkpoint_eval() -> list[str]:
    for _, args, expected in COMMANDS:
        if args[0] == "eval" and expected is None and any("checkpoints/step-" in a for a in args):
            if not any(a.endswith((".yaml", ".jsonl")) for a in args):
                return args
    raise AssertionError("the README shows no evaluation of a trained checkpoint")


@pytest.mark.slow
def test_readme_checkpoint_eval_runs_as_written(tmp_path, monkeypatch, shared_data):
    """A tiny run trained where the README's example looks (its last checkpoint renamed to the
    step the embedded default ends at), then the README's command as written, plus a small budget."""
    import json

    from arpo.cli import main
    from tests.test_trainer import BASE

    monkeypatch.chdir(tmp_path)
    train = [a for a in BASE if not a.startswith("reward.")] + ["trainer.steps=1", "trainer.save_every=1"]
    assert main(["train", *train, "data.train=arith", "reward.name=arith", "run_dir=runs/default"]) == 0
    args = _readme_checkpoint_eval()
    model_path = next(a.split("=", 1)[1] for a in args if a.startswith("model.path="))
    os.rename(tmp_path / "runs/default/checkpoints/step-000001", tmp_path / os.path.dirname(model_path))
    budget = ["eval.limit=2", "rollout.max_response_tokens=16", "eval.out=out"]
    assert main([*args, *budget]) == 0
    with open(tmp_path / "out" / "results.json") as f:
        results = json.load(f)
    # asked and scored as the run trained: the arith run's Python prompt, tools and reward
    assert results["system_prompt"] == "python" and results["tools"] == ["python"]
    assert results["reward"] == "arith"
    assert all(b["accuracy_metric"] == "exact integer" for b in results["benchmarks"].values())
