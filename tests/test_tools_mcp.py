"""MCP client tools against real servers the tests start (stdio, and streamable HTTP on
127.0.0.1): a working one, and one per fault. Every fault gives the model an error result, or a
one-line start-up error naming the server; no call outlives its deadline by more than a little,
and no server process outlives its run."""

import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("mcp")

from mcp import types  # noqa: E402

from arpo.config.tools import McpConfig, McpServerConfig, ToolsConfig  # noqa: E402
from arpo.errors import ConfigError  # noqa: E402
from arpo.tools.base import ToolCall  # noqa: E402
from arpo.tools.budget import truncate_tokens  # noqa: E402
from arpo.tools.executor import ToolExecutor  # noqa: E402
from arpo.tools.mcp.content import result_text  # noqa: E402
from arpo.tools.registry import build_tools  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

ASSETS = os.path.join(ROOT, "tests", "assets", "mcp")
SERVER = os.path.join(ASSETS, "server.py")
SLACK_S = 4.0  # a deadline may be overrun by the ping that checks the server and process start-up


def pids(pid_file) -> list[int]:
    return [int(x) for x in open(pid_file).read().split()] if os.path.exists(pid_file) else []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def assert_all_stopped(pid_file, expected: int) -> None:
    started = pids(pid_file)
    assert len(started) == expected, started
    deadline = time.monotonic() + 10
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in started if alive(p)], "a server process outlived its run"


@pytest.fixture
def pid_file(tmp_path):
    return str(tmp_path / "pids")


def stdio(kind, pid_file, script=SERVER, **kw) -> McpServerConfig:
    args = [script, *kind.split()]
    name = kw.pop("name", kind)
    return McpServerConfig(
        name=name, command=sys.executable, args=args, env={"ARPO_TEST_PID_FILE": pid_file}, **kw
    )


def executor_for(*servers, **tools_kw) -> ToolExecutor:
    return ToolExecutor(build_tools(ToolsConfig(enabled=[], mcp=McpConfig(list(servers)), **tools_kw)), 2)


def call(executor, name, **arguments):
    start = time.monotonic()
    result = executor.submit(ToolCall(name, arguments)).result()
    return result, time.monotonic() - start


def test_working_server_over_stdio(pid_file):
    with executor_for(stdio("working", pid_file, timeout_s=20)) as executor:
        schemas = {s["function"]["name"]: s for s in executor.registry.schemas()}
        assert set(schemas) == {"calculate", "lookup"}
        params = schemas["calculate"]["function"]["parameters"]
        assert params["required"] == ["expression"] and params["properties"]["expression"]["type"] == "string"
        assert "arithmetic" in schemas["calculate"]["function"]["description"]
        result, _ = call(executor, "calculate", expression="37 * 59")
        assert result.error is None and result.text == "2183"
        result, _ = call(executor, "lookup", key="capital_of_veloria")
        assert result.text == "Marn"
        result, _ = call(executor, "lookup", key="nope")  # the tool's own error (isError)
        assert result.error and "no entry 'nope'" in result.text and result.text.startswith("Error:")
        assert_running = [p for p in pids(pid_file) if alive(p)]
        assert len(assert_running) == 1  # one process for the run, shared by every call
    assert_all_stopped(pid_file, 1)


def test_allow_list_and_unknown_names(pid_file):
    with executor_for(stdio("working", pid_file, tools=["lookup"])) as executor:
        assert executor.registry.names == ["lookup"]
    with pytest.raises(ConfigError, match=r"MCP server 'working' has no tool\(s\) \['sum'\]"):
        executor_for(stdio("working", pid_file, tools=["sum"]))
    assert_all_stopped(pid_file, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(pid_file):
    port = _free_port()
    env = dict(os.environ, ARPO_TEST_PID_FILE=pid_file)
    proc = subprocess.Popen([sys.executable, SERVER, "working", "--http", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


def test_working_server_over_streamable_http(http_server):
    cfg = McpServerConfig(name="remote", url=http_server, headers={"X-Test": "1"}, timeout_s=20)
    with executor_for(cfg) as executor:
        result, _ = call(executor, "calculate", expression="2 * 21")
        assert result.error is None and result.text == "42"


def test_http_server_that_is_not_there():
    cfg = McpServerConfig(name="nobody", url=f"http://127.0.0.1:{_free_port()}/mcp", startup_timeout_s=10)
    with pytest.raises(ConfigError, match="MCP server 'nobody' did not start") as info:
        executor_for(cfg)
    assert "\n" not in str(info.value)


def test_hanging_call_times_out(pid_file):
    with executor_for(stdio("hang", pid_file, timeout_s=1.0)) as executor:
        result, elapsed = call(executor, "wait")
        assert result.timed_out and result.error and "no result within 1 s" in result.text
        assert elapsed < 1.0 + SLACK_S
    assert_all_stopped(pid_file, 1)


def test_answer_dripping_slower_than_the_deadline(pid_file):
    # The proxy writes no pid; its child (the working server) does, and dies with it.
    cfg = stdio("0.05", pid_file, script=os.path.join(ASSETS, "drip.py"), name="drip", timeout_s=1.0)
    with executor_for(cfg) as executor:
        result, elapsed = call(executor, "calculate", expression="1 + 1")
        assert result.timed_out and elapsed < 1.0 + SLACK_S
    assert_all_stopped(pid_file, 1)


def test_crash_mid_call_restarts_once(pid_file):
    with executor_for(stdio("crash", pid_file, timeout_s=10)) as executor:
        result, _ = call(executor, "crash")
        assert result.error and "died during the call" in result.text
        result, _ = call(executor, "echo", text="back")  # restarted
        assert result.error is None and result.text == "back"
        result, _ = call(executor, "crash")
        assert result.error
        result, elapsed = call(executor, "echo", text="again")  # no second restart
        assert result.error and "died again after its restart" in result.text and elapsed < 1
    assert_all_stopped(pid_file, 2)


def test_huge_result_is_cut_to_the_token_budget(pid_file):
    from arpo.models.tiny import tiny_tokenizer

    with executor_for(stdio("huge", pid_file, timeout_s=30)) as executor:
        result, _ = call(executor, "dump")
    assert result.error is None and len(result.text) > 1_000_000
    tok = tiny_tokenizer()
    shown = truncate_tokens(result.text, tok, 256)
    assert shown.truncated and len(tok.encode(shown.text)) <= 256
    assert shown.text.startswith("Traceback (most recent call last):")
    assert shown.text.endswith("ValueError: the final line survives")
    assert f"{shown.tokens - 256 + 1}" in shown.text or "tokens cut" in shown.text
    assert_all_stopped(pid_file, 1)


def test_invalid_json_rpc_gives_an_error_result(pid_file):
    cfg = stdio("", pid_file, script=os.path.join(ASSETS, "invalid_jsonrpc.py"), name="garble", timeout_s=2)
    with executor_for(cfg) as executor:
        result, elapsed = call(executor, "garble")
        assert result.error and "garble" in result.text and elapsed < 2 + SLACK_S


def test_server_exiting_at_start_up_is_a_one_line_error(pid_file):
    with pytest.raises(ConfigError) as info:
        executor_for(stdio("exit", pid_file))
    message = str(info.value)
    assert message.startswith("MCP server 'exit' did not start") and "\n" not in message
    assert "fatal: the server's configuration is missing" in message
    assert_all_stopped(pid_file, 1)


def test_invalid_tool_schema_is_a_one_line_error(pid_file):
    with pytest.raises(
        ConfigError, match=r"MCP server 'badschema': tool 'broken': invalid parameters schema"
    ):
        executor_for(stdio("badschema", pid_file))
    assert_all_stopped(pid_file, 1)


def test_config_errors_name_the_server():
    with pytest.raises(ConfigError, match="either command"):
        executor_for(McpServerConfig(name="both", command="x", url="http://127.0.0.1:1/mcp"))
    with pytest.raises(ConfigError, match="name is empty"):
        executor_for(McpServerConfig(command="x"))


def test_content_types_map_to_text():
    result = types.CallToolResult(
        content=[
            types.TextContent(text="hello"),
            types.ImageContent(data="AAAA", mime_type="image/png"),
            types.EmbeddedResource(resource=types.TextResourceContents(uri="file:///a.txt", text="inside")),
            types.ResourceLink(uri="file:///b.bin", name="b.bin"),
        ]
    )
    assert result_text(result).split("\n") == [
        "hello",
        "[image image/png, 3 bytes: not shown]",
        "inside",
        "[resource link file:///b.bin: b.bin]",
    ]
    structured = types.CallToolResult(content=[], structured_content={"sum": 3})
    assert result_text(structured) == '{"sum": 3}'
