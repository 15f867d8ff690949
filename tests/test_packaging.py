"""The built wheel is a working install: every subpackage (and `kernels/` as `arpo.kernels`, never
a top-level `kernels`), the `arpo` command, and the recipes the docs name, all used from outside
the checkout with nothing of the checkout (nor its editable install) on the path."""

import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.conftest import ROOT


def build_wheel(source: str, out_dir) -> str:
    env = dict(os.environ, ARPO_NO_EXT="1")  # the extension is tested elsewhere; keep this fast
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out_dir),
    ]
    subprocess.run([*cmd, source], check=True, env=env, capture_output=True)
    (wheel,) = [p for p in os.listdir(out_dir) if p.endswith(".whl")]
    return os.path.join(out_dir, wheel)


def installed_python(target) -> tuple[list[str], dict[str, str]]:
    """A python that sees the wheel's install (`target`) and this environment's dependencies, but not
    the editable install: `-S` skips the site hooks (.pth files) that would map `arpo` to the checkout."""
    return [sys.executable, "-S"], {
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    }


def run_installed(target, cwd, *args):
    python, env = installed_python(target)
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), **env}
    return subprocess.run([*python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


IMPORT_ALL = """
import importlib, os, pkgutil, sys
import arpo
names = ["arpo"] + [m.name for m in pkgutil.walk_packages(arpo.__path__, "arpo.") if m.ispkg]
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith(sys.argv[1]), (name, module.__file__)
print(" ".join(sorted(names)))
"""


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheel = build_wheel(ROOT, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "arpo/kernels/__init__.py" in names and not any(n.startswith("kernels/") for n in names)
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        capture_output=True,
    )
    script = str(target / "bin" / "arpo")

    out = run_installed(target, elsewhere, script, "--help")
    assert out.returncode == 0 and "train" in out.stdout, out.stderr
    out = run_installed(target, elsewhere, script, "config", "configs/default.yaml", "rollout.M=4")
    assert out.returncode == 0 and "M: 4" in out.stdout, out.stderr
    for recipe in os.listdir(os.path.join(ROOT, "arpo", "configs")):
        out = run_installed(target, elsewhere, script, "config", recipe)
        assert out.returncode == 0, (recipe, out.stderr)

    out = run_installed(target, elsewhere, "-c", IMPORT_ALL, str(target))
    assert out.returncode == 0, out.stderr
    packages = set(out.stdout.split())
    source_packages = {
        "arpo." + os.path.relpath(d, os.path.join(ROOT, "arpo")).replace(os.sep, ".")
        for d, _, files in os.walk(os.path.join(ROOT, "arpo"))
        if "__init__.py" in files and d != os.path.join(ROOT, "arpo")
    }
    assert source_packages | {"arpo", "arpo.kernels"} <= packages
    out = run_installed(
        target, elsewhere, "-c", "import arpo.kernels, sys; assert 'transformers' not in sys.modules"
    )
    assert out.returncode == 0, out.stderr


# The trainer's dependencies: a kernels-only install must import none of them.
TRAINER_DEPENDENCIES = (
    "transformers", "safetensors", "omegaconf", "yaml", "rich", "matplotlib", "bm25s", "math_verify",
    "pyarrow", "wandb", "mcp", "jsonschema",
)  # fmt: skip

KERNELS_ALONE = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Absent(importlib.abc.MetaPathFinder):
    # stands in for an environment where only torch and triton (and theirs) are installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Absent())
import torch
from arpo.kernels import linear_logprob_entropy
hidden = torch.randn(2, 5, 16, requires_grad=True)
weight = torch.randn(40, 16, requires_grad=True)
labels = torch.randint(0, 40, (2, 5))
logp, entropy = linear_logprob_entropy(hidden, weight, labels, shift=True)
(logp.sum() + entropy.sum()).backward()
assert logp.shape == (2, 4) and hidden.grad is not None
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


@pytest.mark.slow
def test_kernels_alone_need_only_torch_and_triton(tmp_path):
    wheel = build_wheel(ROOT, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line for line in z.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")]
    core = sorted(line.split()[1] for line in requires if "extra ==" not in line)
    assert [name.split(">")[0] for name in core] == ["torch", "triton"], requires
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        capture_output=True,
    )
    out = run_installed(target, tmp_path, "-c", KERNELS_ALONE, ",".join(TRAINER_DEPENDENCIES))
    assert out.returncode == 0 and out.stdout.strip() == "ok []", out.stderr
    # and the trainer, without its extra, says what to install in one line
    blocker = KERNELS_ALONE.split("import torch")[0]
    cli = blocker + "from arpo.cli import main\nsys.exit(main(['config']))\n"
    out = run_installed(target, tmp_path, "-c", cli, ",".join(TRAINER_DEPENDENCIES))
    assert out.returncode == 2 and "pip install 'arpo[train]'" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
