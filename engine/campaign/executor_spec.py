"""Where a run's work units execute, as written by the user: `local` or `dask://HOST:PORT`.

    parse_executor("local")                 -> ExecutorSpec("local")
    parse_executor("dask://lab-srv:8786")   -> ExecutorSpec("dask", "tcp://lab-srv:8786")

Only the words are checked here (the campaign's `[run] executor`, `run --executor`, the app's
start-run dialog); engine/tasks/executor.py makes the executor and reaches the scheduler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DASK_DEFAULT_PORT", "EXECUTOR_EXAMPLES", "ExecutorSpec", "parse_executor"]

DASK_DEFAULT_PORT = 8786  # `dask scheduler`'s default
EXECUTOR_EXAMPLES = '"local" or "dask://HOST:PORT" (e.g. "dask://lab-srv:8786")'
_DASK = re.compile(r"^dask://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?/?$")


@dataclass(frozen=True)
class ExecutorSpec:
    kind: str = "local"  # "local" (a process pool on this machine) | "dask" (a dask.distributed cluster)
    address: str | None = None  # the scheduler's tcp://HOST:PORT for "dask"

    def __str__(self) -> str:
        if self.kind == "dask" and self.address:
            return "dask://" + self.address.removeprefix("tcp://")
        return self.kind

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


def parse_executor(text: str) -> ExecutorSpec:
    """The executor named by `text`; ValueError saying what is expected otherwise (a message
    to put after the key or option: "expected ..., got ...")."""
    value = str(text).strip()
    if value.lower() == "local":
        return ExecutorSpec("local")
    match = _DASK.match(value)
    if match:
        port = int(match["port"]) if match["port"] else DASK_DEFAULT_PORT
        if not 0 < port < 65536:
            raise ValueError(f"port {port} of {text!r} is not a TCP port (1-65535)")
        return ExecutorSpec("dask", f"tcp://{match['host']}:{port}")
    hint = ""
    if value.startswith(("tcp://", "tls://")) or re.match(r"^[A-Za-z0-9_.-]+:\d+$", value):
        hint = f" (for a Dask scheduler write dask://{value.split('://')[-1]})"
    raise ValueError(f"expected {EXECUTOR_EXAMPLES}, got {text!r}{hint}")
