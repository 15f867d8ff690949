"""Config of the tools: the built-ins, your own (`custom`), MCP servers, and the budgets of their output."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PythonToolConfig:
    timeout_s: float = 10.0  # wall clock per call
    cpu_s: int = 10  # RLIMIT_CPU per process
    memory_mb: int = 1024  # RLIMIT_AS per process
    max_processes: int = 64  # RLIMIT_NPROC (per sandbox uid when run as root)
    max_open_files: int = 256  # RLIMIT_NOFILE
    max_file_mb: int = 16  # RLIMIT_FSIZE: largest file the code may write
    tmpfs_mb: int = 64  # size of the private /tmp (the working directory) in full isolation
    max_output_chars: int = 2000
    # Root only: each concurrent call runs as its own uid uid_base + slot, so the process limit,
    # signals and /proc of one call cannot reach another call or the host.
    uid_base: int = 1_500_000
    # Refuse to run without network/pid/mount namespaces instead of warning.
    require_netns: bool = False


@dataclass
class SearchToolConfig:
    backend: str = field(default="replay", metadata={"choices": ("bm25", "replay", "http")})
    corpus: str = ""  # JSONL corpus for bm25
    # replay: the ARPO search cache (query -> text); http: the SQLite answer cache
    # (default ~/.cache/arpo/search_http.sqlite)
    cache: str = ""
    url: str = ""  # http backend
    # Secrets (never written to saved configs, checkpoints or wandb): the key is sent as
    # `Authorization: Bearer <key>`, from ARPO_SEARCH_API_KEY when empty; headers are sent as
    # they are. Either can name an environment variable: `${oc.env:MY_KEY}`.
    api_key: str = field(default="", metadata={"secret": True})
    headers: dict[str, str] = field(default_factory=dict, metadata={"secret": True})
    http_method: str = field(default="POST", metadata={"choices": ("POST", "GET")})
    http_timeout_s: float = 20.0  # the whole request, however slowly the server answers
    top_k: int = 3
    max_chars: int = 1500


@dataclass
class CustomToolConfig:
    """A tool of your own: a function, or a class whose instance (built without arguments) is called."""

    target: str = ""  # module:function, module:Class, or path/to/file.py:function
    name: str = ""  # default: the function's name (a class: its `name` attribute, else its name)
    # OpenAI function-calling schema ({"type": "function", "function": {...}} or the inner object);
    # empty: built from the type hints and the docstring.
    schema: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0  # wall clock per call


@dataclass
class McpServerConfig:
    """An MCP server: a command started over stdio (one process per run and rank), or a URL."""

    name: str = ""  # names the server in errors and metrics
    command: str = ""  # stdio: the executable ...
    args: list[str] = field(default_factory=list)  # ... its arguments
    # ... and extra environment variables (secret: never written to saved configs or trackers)
    env: dict[str, str] = field(default_factory=dict, metadata={"secret": True})
    url: str = ""  # streamable HTTP endpoint (e.g. http://127.0.0.1:8000/mcp); excludes `command`
    # HTTP headers (e.g. Authorization; secret: never written to saved configs or trackers)
    headers: dict[str, str] = field(default_factory=dict, metadata={"secret": True})
    tools: list[str] = field(default_factory=list)  # allow-list of the server's tools; empty: all
    timeout_s: float = 30.0  # deadline of one call
    startup_timeout_s: float = 30.0  # deadline to connect and list the tools


@dataclass
class McpConfig:
    servers: list[McpServerConfig] = field(default_factory=list)


@dataclass
class ToolsConfig:
    # Built-in tools the model may call (python, search); tools under `custom` and the allowed tools
    # of `mcp.servers` are enabled by being configured (naming them here too is allowed).
    enabled: list[str] = field(default_factory=lambda: ["python"])
    format: str = field(default="tags", metadata={"choices": ("tags", "hermes")})
    workers: int = 4
    # Tokens (policy tokenizer) of one result the model reads; longer results keep their head and
    # tail around a marker saying how much was cut. 0: no limit.
    result_max_tokens: int = 512
    deadline_s: float = 60.0  # whole-call limit of a tool that sets none of its own (python: timeout_s)
    python: PythonToolConfig = field(default_factory=PythonToolConfig)
    search: SearchToolConfig = field(default_factory=SearchToolConfig)
    custom: list[CustomToolConfig] = field(default_factory=list)
    mcp: McpConfig = field(default_factory=McpConfig)
