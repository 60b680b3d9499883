"""A Ray cluster of several nodes on this machine, for tests and benchmarks of sharded builds.

Each node is one ``ray start --block`` process (the head first, then ``--address`` of the
head): the command runs the node's Ray processes and, on SIGTERM, stops exactly those (Ray
docs, "ray start"). So stopping this cluster never touches another Ray instance on the same
machine, unlike ``ray stop``, which stops every Ray process of the machine.

A production cluster is started by whoever runs Ray (``ray start`` on each machine, KubeRay, a
cloud launcher); ``recsys build --ray-address HOST:PORT`` only connects to it.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from recsys.errors import BuildError

_STARTED = "Ray runtime started."
HOST = "127.0.0.1"


def _ray_cli() -> str:
    """The ``ray`` command of this interpreter's environment (workers must run our code)."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise BuildError("the 'ray' command is not installed: pip install 'recsys[scale]'")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    """``nodes`` Ray nodes with ``cpus_per_node`` CPUs each; ``address`` is the head's GCS."""

    def __init__(
        self,
        *,
        nodes: int = 2,
        cpus_per_node: int = 1,
        object_store_mb: int = 300,
        temp_dir: Path | None = None,
    ) -> None:
        if nodes < 1 or cpus_per_node < 1:
            raise ValueError(
                f"need nodes >= 1 and cpus_per_node >= 1, got {nodes}, {cpus_per_node}"
            )
        self.n_nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.object_store_mb = object_store_mb
        # short: Ray puts unix sockets under it, and sun_path is ~100 bytes
        self._own_dir = temp_dir is None
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="recsys-ray-", dir="/tmp"))
        self.port = 0
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        if not self._procs:
            raise BuildError("the local Ray cluster is not running")
        return f"{HOST}:{self.port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def start(self, timeout_s: float = 90.0) -> str:
        self.port = _free_port()
        common = [
            f"--num-cpus={self.cpus_per_node}",
            f"--object-store-memory={self.object_store_mb * 2**20}",
            f"--node-ip-address={HOST}",
            "--disable-usage-stats",
        ]
        head = [
            "--head",
            f"--port={self.port}",
            f"--temp-dir={self.temp_dir}",
            "--include-dashboard=false",
        ]
        try:
            self._start_node("head", head + common, timeout_s)
            for i in range(1, self.n_nodes):
                self._start_node(f"node-{i}", [f"--address={self.address}", *common], timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.address

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM each node's ``ray start --block`` (workers first), which stops that node's
        processes; a node that does not stop in time has its own process group killed."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs = []
        if self._own_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_node(self, name: str, args: list[str], timeout_s: float) -> None:
        log_path = self.temp_dir / f"{name}.log"
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [_ray_cli(), "start", "--block", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: ours to kill as a last resort
            )
        self._procs.append(proc)
        deadline = time.monotonic() + timeout_s
        while _STARTED not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise BuildError(f"ray node {name} did not start:\n{tail}")
            time.sleep(0.1)
