"""What tools exchange: a parsed call, a result, and the interface every tool implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class ToolError(Exception):
    """A tool failed in a way the model should read about (bad arguments, backend down)."""


class ToolTimeout(ToolError):
    """A tool gave up waiting (its backend was too slow); counted as a timeout."""


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""  # the call's text as the model wrote it
    error: str | None = None  # set when the call is malformed; the tool is then not run


@dataclass
class ToolResult:
    text: str  # what the model sees (holds the error message when the call failed)
    error: str | None = None
    latency_s: float = 0.0
    timed_out: bool = False


class Tool(Protocol):
    name: str
    # Optional: the longest one call may take (seconds), enforced by the executor, which then
    # answers with a timeout error. A tool without one gets the executor's default.
    # deadline_s: float

    def schema(self) -> dict:
        """OpenAI function-calling schema: {"type": "function", "function": {...}}."""

    def run(self, arguments: dict[str, Any]) -> ToolResult:
        """Execute one call. May raise ToolError; the executor turns it into an error result."""


def function_schema(name: str, description: str, argument: str, argument_doc: str) -> dict:
    """Schema of a tool taking one required string argument (all built-in tools do)."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {argument: {"type": "string", "description": argument_doc}},
                "required": [argument],
            },
        },
    }


def main_argument(tool: Tool) -> str:
    """The single required argument that a tag-format call (`<python>code</python>`) fills."""
    return tool.schema()["function"]["parameters"]["required"][0]
