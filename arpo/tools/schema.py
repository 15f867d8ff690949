"""OpenAI function-calling schemas: built from a Python function's type hints and docstring, and
checked (a given schema, or one an MCP server lists) before a run starts.

A schema is `{"type": "function", "function": {"name", "description", "parameters"}}` where
`parameters` is a JSON Schema object. Problems raise `SchemaError` with a one-line reason.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any, Literal, Union

import jsonschema

from arpo.errors import ConfigError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}
# "name: text" under Args:/Parameters:, or ":param name: text" (reST)
ARG_DOC = re.compile(r"^\s*(?::param\s+)?\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


class SchemaError(ConfigError):
    pass


def _json_type(hint: Any, where: str) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in SIMPLE:
        return {"type": SIMPLE[hint]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _json_type(rest[0], where)
        return {"anyOf": [_json_type(a, where) for a in rest]}
    if origin in (list, tuple, set):
        return {"type": "array", **({"items": _json_type(args[0], where)} if args else {})}
    if origin is dict:
        return {"type": "object"}
    raise SchemaError(f"{where}: type {hint!r} has no JSON schema; use str, int, float, bool, list, dict")


def _docs(doc: str) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph, and a description per documented argument."""
    summary = " ".join(doc.strip().split("\n\n")[0].split()) if doc else ""
    params, in_args = {}, False
    for line in doc.splitlines():
        if line.strip().rstrip(":").lower() in ("args", "arguments", "parameters", "params"):
            in_args = True
            continue
        m = ARG_DOC.match(line)
        if m and (in_args or line.strip().startswith(":param")):
            params[m.group(1)] = m.group(2).strip()
    return summary, params


def function_schema_from(fn, name: str, doc: str | None = None) -> dict:
    """The schema of calling `fn` (self already bound) under `name`, from hints and docstring."""
    doc = inspect.getdoc(fn) if doc is None else doc
    summary, arg_docs = _docs(doc or "")
    hints = typing.get_type_hints(fn)
    properties, required = {}, []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if pname not in hints:
            raise SchemaError(f"{name}: parameter {pname!r} has no type hint (add one, or give a schema)")
        prop = _json_type(hints[pname], f"{name}: parameter {pname!r}")
        if pname in arg_docs:
            prop["description"] = arg_docs[pname]
        properties[pname] = prop
        if param.default is param.empty:
            required.append(pname)
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": summary, "parameters": parameters}}


def normalize(schema: dict, where: str) -> dict:
    """`schema` in the wrapped form, checked: a valid name and a JSON Schema object of parameters."""
    inner = schema.get("function", schema) if schema.get("type") == "function" else schema
    if not isinstance(inner, dict):
        raise SchemaError(f"{where}: the schema must be a JSON object")
    name = inner.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SchemaError(f"{where}: invalid tool name {name!r} (letters, digits, _ . -; at most 64)")
    parameters = inner.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise SchemaError(f"{where}: tool {name!r}: parameters must be a JSON Schema with type 'object'")
    try:
        jsonschema.validators.validator_for(parameters).check_schema(parameters)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"{where}: tool {name!r}: invalid parameters schema: {e.message}") from None
    properties = parameters.get("properties", {})
    missing = [p for p in parameters.get("required", []) if p not in properties]
    if missing:
        raise SchemaError(f"{where}: tool {name!r}: required {missing} not among the properties")
    description = inner.get("description") or ""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def check_signature(fn, schema: dict, where: str) -> None:
    """A given schema must describe `fn`: every property is a parameter, every parameter without a
    default is required."""
    params = inspect.signature(fn).parameters
    spec = schema["function"]["parameters"]
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [p for p in spec.get("properties", {}) if p not in params and not open_kwargs]
    if unknown:
        raise SchemaError(f"{where}: schema properties {unknown} are not parameters of the function")
    needed = [
        n
        for n, p in params.items()
        if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    loose = [n for n in needed if n not in spec.get("required", [])]
    if loose:
        raise SchemaError(f"{where}: parameters {loose} have no default but the schema does not require them")
