"""The `python` tool: model-written code run in the sandbox (`arpo.tools.sandbox`)."""

from __future__ import annotations

import re
from typing import Any

from arpo.config.tools import PythonToolConfig
from arpo.errors import ConfigError
from arpo.tools.base import ToolError, ToolResult, function_schema
from arpo.tools.sandbox import MAX_UID_BASE, run_sandboxed

POSITIVE_FIELDS = (
    "timeout_s", "cpu_s", "memory_mb", "max_processes", "max_open_files", "max_file_mb", "tmpfs_mb",
    "max_output_chars",
)  # fmt: skip
START_AND_CLEANUP_S = 10.0  # the executor's deadline allows this beyond the code's own wall clock
FENCE = re.compile(r"^\s*```[ \t]*(?:python|py)?[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)


class PythonTool:
    name = "python"

    def __init__(self, cfg: PythonToolConfig):
        if not 0 < cfg.uid_base <= MAX_UID_BASE:
            raise ConfigError(f"tools.python.uid_base={cfg.uid_base} is out of range (1 to {MAX_UID_BASE})")
        bad = [name for name in POSITIVE_FIELDS if getattr(cfg, name) <= 0]
        if bad:
            raise ConfigError(f"tools.python: {', '.join(bad)} must be positive")
        self.cfg = cfg
        self.deadline_s = cfg.timeout_s + START_AND_CLEANUP_S

    def schema(self) -> dict:
        return function_schema(
            self.name,
            "Run Python 3 code in a fresh sandbox and return what it prints (stdout and stderr); "
            "the value of a final expression is printed too. No network, no state between calls.",
            "code",
            "The Python code to run.",
        )

    def run(self, arguments: dict[str, Any]) -> ToolResult:
        code = arguments.get("code")
        if not isinstance(code, str):
            raise ToolError("python: argument 'code' must be a string")
        fenced = FENCE.match(code)  # models often wrap the code in a markdown fence
        code = fenced.group(1) if fenced else code
        if not code.strip():
            raise ToolError("python: empty code")
        return run_sandboxed(code, self.cfg)
