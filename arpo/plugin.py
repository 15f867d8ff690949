"""Loading a user's object named `module:attr` (an importable module) or `path/to/file.py:attr`.

Failures are `ArpoError`s in one line naming the spec, for the config key `what` that gave it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from arpo.errors import ArpoError


def _import(module_ref: str, what: str):
    if module_ref.endswith(".py"):
        if not os.path.isfile(module_ref):
            raise ArpoError(f"{what}: file not found: {module_ref}")
        name = "arpo_user_" + os.path.splitext(os.path.basename(module_ref))[0]
        spec = importlib.util.spec_from_file_location(name, module_ref)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_ref)


def load_object(spec: str, what: str):
    """The attribute `attr` of the module in `spec` ("module:attr" or "file.py:attr")."""
    module_ref, _, attr = spec.rpartition(":")
    if not module_ref or not attr:
        raise ArpoError(f"{what}={spec!r} must look like module:function or path/to/file.py:function")
    try:
        module = _import(module_ref, what)
    except ArpoError:
        raise
    except Exception as e:  # the user's module failed to import: say how, in one line
        raise ArpoError(f"{what}: cannot import {module_ref!r}: {type(e).__name__}: {e}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ArpoError(f"{what}: {module_ref!r} has no {attr!r} (callables: {', '.join(found) or 'none'})")
    return obj
