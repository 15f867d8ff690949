"""Your own tools (`tools.custom`): a function, or a class whose instance is called, sync or async.

The schema is the one given, checked against the function's signature, or built from its type
hints and docstring. A call runs the function with the model's arguments under `timeout_s`; its
return value becomes the result (strings as they are, anything else as JSON), and an exception it
raises becomes an error result holding the exception's type and message.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
from typing import Any

from arpo.config.tools import CustomToolConfig
from arpo.errors import ArpoError
from arpo.plugin import load_object
from arpo.tools.base import ToolError, ToolResult
from arpo.tools.schema import SchemaError, check_signature, function_schema_from, normalize


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _callable_of(obj, where: str):
    """(function, default name, docstring) of a function, or of an instance of a class."""
    if inspect.isclass(obj):
        try:
            instance = obj()
        except Exception as e:
            raise ArpoError(f"{where}: {obj.__name__}() failed: {type(e).__name__}: {e}") from None
        fn = getattr(instance, "run", None) or (instance if callable(instance) else None)
        if fn is None:
            raise ArpoError(f"{where}: class {obj.__name__} has neither a run() method nor __call__")
        method = fn if inspect.ismethod(fn) else instance.__call__
        # The class says what the tool is; its method documents the arguments.
        doc = f"{inspect.getdoc(obj) or ''}\n\n{inspect.getdoc(method) or ''}"
        return method, getattr(obj, "name", None) or _snake(obj.__name__), doc
    if not callable(obj):
        raise ArpoError(f"{where}: {obj!r} is not a function or class")
    return obj, obj.__name__, inspect.getdoc(obj) or ""


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return str(value)


class CustomTool:
    def __init__(self, cfg: CustomToolConfig, where: str):
        if cfg.timeout_s <= 0:
            raise ArpoError(f"{where}.timeout_s must be positive, got {cfg.timeout_s}")
        fn, default_name, doc = _callable_of(load_object(cfg.target, f"{where}.target"), where)
        self.name = cfg.name or default_name
        self.fn, self.timeout_s = fn, cfg.timeout_s
        self.is_async = inspect.iscoroutinefunction(fn)
        if cfg.schema:
            schema = normalize({"name": self.name, **_inner(cfg.schema)}, where)
            check_signature(fn, schema, where)
        else:
            try:
                built = function_schema_from(fn, self.name, doc)
            except SchemaError as e:
                raise SchemaError(f"{where}: {e}") from None
            schema = normalize(built, where)
        if schema["function"]["name"] != self.name:
            raise SchemaError(
                f"{where}: schema name {schema['function']['name']!r} differs from {self.name!r}"
            )
        self._schema = schema

    def schema(self) -> dict:
        return self._schema

    def run(self, arguments: dict[str, Any]) -> ToolResult:
        outcome: dict[str, Any] = {}
        worker = threading.Thread(target=self._call, args=(arguments, outcome), daemon=True)
        worker.start()
        # A sync function cannot be stopped: past the deadline it is left to finish on its own.
        worker.join(self.timeout_s)
        if worker.is_alive():
            msg = f"{self.name}: no result within {self.timeout_s:g} s"
            return ToolResult(text=f"Error: {msg}", error=msg, timed_out=True)
        if "error" in outcome:
            raise ToolError(outcome["error"])
        return ToolResult(text=_as_text(outcome["value"]))

    def _call(self, arguments: dict[str, Any], outcome: dict) -> None:
        try:
            if self.is_async:
                outcome["value"] = asyncio.run(asyncio.wait_for(self.fn(**arguments), self.timeout_s))
            else:
                outcome["value"] = self.fn(**arguments)
        except TypeError as e:  # arguments that do not fit the signature
            outcome["error"] = f"{self.name}: {e}"
        except Exception as e:  # the tool's own failure is its answer to the model
            outcome["error"] = f"{self.name}: {type(e).__name__}: {e}"


def _inner(schema: dict) -> dict:
    return dict(schema.get("function", schema)) if schema.get("type") == "function" else dict(schema)
