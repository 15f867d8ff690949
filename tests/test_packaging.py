"""The built wheel maps `kernels/` to `arpo.kernels` and never claims the top-level name `kernels`."""

import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_wheel_installs_arpo_kernels_not_kernels(tmp_path):
    env = dict(os.environ, ARPO_NO_EXT="1")  # the extension is tested elsewhere; keep this fast
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ROOT,
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    assert "arpo/kernels/__init__.py" in names
    assert not any(n.startswith("kernels/") for n in names)
    assert "arpo/cli.py" in names
    # Import from another directory, with only the unpacked wheel on the path.
    code = (
        "import arpo.kernels, arpo, sys; print(arpo.kernels.__file__); "
        "assert 'transformers' not in sys.modules"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path / "site" / "arpo" / "kernels"))
