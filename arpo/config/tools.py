"""`tools`: which tools an agent may call, the call format, and each tool's limits."""

from dataclasses import dataclass, field


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
class ToolsConfig:
    enabled: list[str] = field(default_factory=lambda: ["python"])
    format: str = field(default="tags", metadata={"choices": ("tags", "hermes")})
    workers: int = 4
    deadline_s: float = 60.0  # whole-call limit of a tool that sets none of its own (python: timeout_s)
    python: PythonToolConfig = field(default_factory=PythonToolConfig)
    search: SearchToolConfig = field(default_factory=SearchToolConfig)
