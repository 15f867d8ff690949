"""arpo: Agentic Reinforced Policy Optimization, a trainer for tool-using LLM agents.

Importing `arpo` is cheap: heavy dependencies (torch, transformers) load in the submodules that
need them, so `import arpo.kernels` pulls in torch and triton only.
"""

import os as _os

__version__ = "0.1.0"

# Installed (wheel or editable), `arpo.kernels` maps to the top-level `kernels/` folder through
# setuptools' package-dir. Run from a source checkout with `PYTHONPATH=.` (as `make gpu-check`
# does) that mapping is absent, so let the checkout's root serve as a second search location;
# the pyproject.toml check keeps this from ever picking up an unrelated `kernels` package.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isfile(
    _os.path.join(_root, "kernels", "__init__.py")
):
    __path__.append(_root)  # type: ignore[name-defined]  # noqa: F821
