"""One training/evaluation prompt, whatever file or generator it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arpo.errors import ArpoError


class DataError(ArpoError):
    """A dataset that cannot be read or generated as configured."""


@dataclass
class Example:
    prompt_messages: list[dict]  # chat messages ({"role", "content"}), system prompt included
    ground_truth: Any  # a string, or a list of acceptable strings
    data_source: str
    # `reward` (the default reward's name), `ability` (math | qa), `question`, `index`, and
    # whatever the source row carried in `extra_info`.
    extra: dict = field(default_factory=dict)
