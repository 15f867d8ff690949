"""A stdio "MCP server" that speaks broken JSON-RPC: it answers the handshake and the tool list
correctly, then answers every tool call with a line that is not JSON followed by a response
whose result is not a CallToolResult. Written by hand: the SDK cannot be made to send these."""

import json
import sys

TOOL = {"name": "garble", "description": "Answers in broken JSON-RPC.", "inputSchema": {"type": "object"}}


def reply(message_id, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message_id, "result": result}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    request = json.loads(line)
    method, message_id = request.get("method"), request.get("id")
    if method == "initialize":
        version = request["params"]["protocolVersion"]
        reply(message_id, {"protocolVersion": version, "capabilities": {"tools": {}},
                           "serverInfo": {"name": "garble", "version": "0"}})  # fmt: skip
    elif method == "tools/list":
        reply(message_id, {"tools": [TOOL]})
    elif method == "tools/call":
        sys.stdout.write("this is {not json\n")
        reply(message_id, {"content": "a string where a list belongs"})
    elif method == "ping":
        reply(message_id, {})
    elif message_id is not None:
        reply(message_id, {})
