"""What the model reads of an MCP tool result: text blocks as they are, structured content as JSON
when no text carries it, embedded text resources as their text, and a one-line stub for images,
audio, binary resources and links (the policy reads text only)."""

from __future__ import annotations

import base64
import json

from mcp import types


def _size(data: str) -> int:
    """Bytes of base64 `data` (approximate when it is not valid base64)."""
    try:
        return len(base64.b64decode(data, validate=False))
    except ValueError:
        return len(data) * 3 // 4


def block_text(block) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, (types.ImageContent, types.AudioContent)):
        return f"[{block.type} {block.mime_type}, {_size(block.data)} bytes: not shown]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        return f"[resource {resource.uri} ({resource.mime_type or 'binary'}): not shown]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link {block.uri}: {block.name}]"
    return f"[{getattr(block, 'type', type(block).__name__)} content: not shown]"


def result_text(result: types.CallToolResult) -> str:
    parts = [block_text(b) for b in result.content]
    if result.structured_content is not None and not any(
        isinstance(b, types.TextContent) for b in result.content
    ):
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)
