"""MCP servers for the tests, written with the SDK's server API: `python server.py KIND [--http PORT]`.

working: `calculate(expression)` and `lookup(key)` (a small key-value table); hang: `wait()` never
answers; crash: `echo(text)`, and `crash()` kills the process mid-call; huge: `dump()` returns
about 1 MB ending with a traceback's last line; exit: dies before serving; badschema: lists a
tool whose input schema is not a valid JSON Schema. With ARPO_TEST_PID_FILE set, the process
appends its pid there, so a test can check that no server outlives its run.
"""

import ast
import operator
import os
import sys
import time

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

TABLE = {"capital_of_veloria": "Marn", "answer": "42", "owner_of_quillmark": "Edda Varnholt"}
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        return OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    raise ValueError("only numbers and + - * / are allowed")


def working(server: MCPServer) -> None:
    @server.tool()
    def calculate(expression: str) -> str:
        """Evaluate an arithmetic expression such as 37 * 59."""
        return str(_eval(ast.parse(expression, mode="eval").body))

    @server.tool()
    def lookup(key: str) -> str:
        """Look a key up in the fact table."""
        if key not in TABLE:
            raise ToolError(f"no entry {key!r}")
        return TABLE[key]


def hang(server: MCPServer) -> None:
    @server.tool()
    def wait() -> str:
        """Never answers."""
        time.sleep(3600)
        return "never"


def crash(server: MCPServer) -> None:
    @server.tool()
    def echo(text: str) -> str:
        """Repeat the text."""
        return text

    @server.tool(name="crash")
    def crash_now() -> str:
        """Kill the server in the middle of the call."""
        os._exit(3)


def huge(server: MCPServer) -> None:
    @server.tool()
    def dump() -> str:
        """About a megabyte of traceback."""
        frames = "".join(
            f'  File "app.py", line {i}, in step_{i}\n    step_{i + 1}()\n' for i in range(18_000)
        )
        return "Traceback (most recent call last):\n" + frames + "ValueError: the final line survives"


def bad_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}
    tool = types.Tool(name="broken", description="x", input_schema=schema)

    async def list_tools(ctx, params):
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx, params):
        return types.CallToolResult(content=[types.TextContent(text="unreachable")])

    from mcp.server.stdio import stdio_server

    server = Server("badschema", on_list_tools=list_tools, on_call_tool=call_tool)

    async def main():
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    import anyio

    anyio.run(main)


def main() -> None:
    kind = sys.argv[1]
    if os.environ.get("ARPO_TEST_PID_FILE"):
        with open(os.environ["ARPO_TEST_PID_FILE"], "a") as f:
            f.write(f"{os.getpid()}\n")
    if kind == "exit":
        print("fatal: the server's configuration is missing", file=sys.stderr)
        sys.exit(2)
    if kind == "badschema":
        return bad_schema()
    server = MCPServer(kind, log_level="ERROR")
    {"working": working, "hang": hang, "crash": crash, "huge": huge}[kind](server)
    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()


if __name__ == "__main__":
    main()
