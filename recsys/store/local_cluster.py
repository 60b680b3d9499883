"""A Redis Cluster on this machine: N masters, each with its replicas, from the project's own
redis-server binary. For tests, benchmarks and trying cluster mode without a cluster at hand;
a production cluster is run by whoever runs Redis, and the project only connects to it
(``--redis-url redis+cluster://HOST:PORT``).

The cluster is formed with Redis' own commands (CLUSTER ADDSLOTS, MEET, REPLICATE: "Redis
cluster specification", redis.io), what ``redis-cli --cluster create`` sends, so it works
with the bundled 6.2 binary as well as with 7.x, with or without redis-cli.

Settings that differ from a production default, each on purpose:
- ``cluster-node-timeout`` is short (``node_timeout_ms``), so a killed master is failed over
  in about two seconds instead of fifteen or more;
- ``cluster-require-full-coverage no``: while one master is down, the other masters keep
  answering for their own slots (with ``yes`` every node refuses every key until the failover
  is done). Our readers have fallbacks, so partial answers beat none; the same setting is
  recommended for the production cluster (docs/SCALE.md).
- no persistence: a node's data lives as long as its process (a restarted node rejoins as a
  replica and copies its master).
"""

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from recsys.errors import StoreError
from recsys.store.server import find_redis_server

log = logging.getLogger(__name__)

N_SLOTS = 16384
# A node's cluster bus listens on its port + 10000 (the default; 6.2 has no cluster-port option).
BUS_OFFSET = 10000
HOST = "127.0.0.1"
PORT_TRIES = 5
FORM_TRIES = 3


def free_cluster_port() -> int:
    """A port free on 127.0.0.1 whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise StoreError("no free port pair (port, port + 10000) for a Redis Cluster node")


@dataclass
class ClusterNode:
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(HOST, self.port, socket_timeout=timeout_s, socket_connect_timeout=1.0)


class LocalRedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on free localhost ports.

    ``url`` is a ``redis+cluster://`` URL of the first node; any node would do.
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError(f"need masters >= 1 and replicas >= 0, got {masters}, {replicas}")
        self._own_dir = work_dir is None
        # absolute: each node runs in its own folder, where a relative --dir would not resolve
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="recsys-cluster-")).resolve()
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ClusterNode] = []

    @property
    def url(self) -> str:
        if not self.nodes:
            raise StoreError("the local Redis Cluster is not running")
        return f"redis+cluster://{HOST}:{self.nodes[0].port}"

    @property
    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None and n.alive]

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 30.0) -> str:
        binary = find_redis_server()
        total = self.n_masters * (1 + self.n_replicas)
        try:
            for attempt in range(FORM_TRIES):
                try:
                    self._start_nodes(binary, total, timeout_s)
                    self._form(timeout_s)
                    break
                except (_StrangerError, redis.ResponseError) as e:
                    # a node of another local cluster reached one of ours: fresh ports
                    if attempt == FORM_TRIES - 1:
                        raise StoreError(f"local Redis Cluster: {e}") from e
                    log.warning("local Redis Cluster: %s; starting again on other ports", e)
                    for node in self.nodes:
                        self._kill(node)
                    self.nodes = []
        except BaseException:
            self.stop()
            raise
        log.info("local Redis Cluster up: %s (%d nodes)", self.url, len(self.nodes))
        return self.url

    def _start_nodes(self, binary: Path, total: int, timeout_s: float) -> None:
        for i in range(total):
            self.nodes.append(self._new_node(binary, i))
        for i in range(total):
            for _ in range(PORT_TRIES):
                try:
                    _wait_ping(self.nodes[i], timeout_s)
                    break
                except _PortTakenError:
                    # a port found free was taken before the server bound it (on a busy
                    # machine, by another process's outgoing connection): another port
                    self.nodes[i] = self._new_node(binary, i)
            else:
                raise StoreError(f"no free port for cluster node {i} in {PORT_TRIES} tries")

    def _new_node(self, binary: Path, i: int) -> ClusterNode:
        port = free_cluster_port()
        node = ClusterNode(port, self.work_dir / f"node-{i}-{port}")
        node.data_dir.mkdir(parents=True)
        self._launch(binary, node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            self._kill(node)
        self.nodes = []
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

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

    # ------------------------------------------------------------------ chaos

    def kill_node(self, port: int) -> None:
        """SIGKILL one node (no save, no goodbye): what a crashed machine looks like."""
        self._kill(self._node(port))

    def pause_node(self, port: int) -> None:
        """SIGSTOP one node: it holds its connections but answers nothing (a stalled machine)."""
        proc = self._node(port).proc
        if proc is None:
            raise StoreError(f"cluster node {port} is not running")
        proc.send_signal(signal.SIGSTOP)

    def resume_node(self, port: int) -> None:
        proc = self._node(port).proc
        if proc is None:
            raise StoreError(f"cluster node {port} is not running")
        proc.send_signal(signal.SIGCONT)

    def restart_node(self, port: int, timeout_s: float = 30.0) -> None:
        """Start a killed node again with its nodes.conf: it rejoins the cluster (as a replica
        of whoever took over its slots) and copies that master's data."""
        node = self._node(port)
        if node.alive:
            raise StoreError(f"cluster node {port} is still running")
        self._launch(find_redis_server(), node)
        _wait_ping(node, timeout_s)

    def master_ports(self) -> list[int]:
        """Ports of the masters that own slots, as a live node sees the cluster now."""
        return sorted({p for p, _ in self.slot_owners().values()})

    def slot_owners(self) -> dict[tuple[int, int], tuple[int, list[int]]]:
        """(first, last slot) -> (master port, replica ports), from CLUSTER SLOTS of a live node."""
        for node in self.nodes:
            if not node.alive:
                continue
            with contextlib.suppress(redis.RedisError), node.client() as c:
                out: dict[tuple[int, int], tuple[int, list[int]]] = {}
                for first, last, master, *replicas in c.execute_command("CLUSTER SLOTS"):
                    out[(int(first), int(last))] = (
                        int(master[1]),
                        [int(r[1]) for r in replicas],
                    )
                return out
        raise StoreError("no live node of the local Redis Cluster answers")

    def port_of_slot(self, slot: int) -> int:
        for (first, last), (port, _) in self.slot_owners().items():
            if first <= slot <= last:
                return port
        raise StoreError(f"slot {slot} is not served by any master")

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every live node says cluster_state:ok, every slot has a live master, and every
        live replica has finished syncing with its master."""
        deadline = time.monotonic() + timeout_s
        problem: str | None = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._health_problem()
            if problem is None:
                return
            time.sleep(0.1)
        raise StoreError(f"local Redis Cluster not healthy after {timeout_s:g}s: {problem}")

    # ------------------------------------------------------------------ internals

    def _node(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise StoreError(f"no node on port {port} in this local cluster")

    def _launch(self, binary: Path, node: ClusterNode) -> None:
        args = [
            str(binary),
            "--port", str(node.port),
            "--bind", HOST,
            "--dir", str(node.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--maxmemory-policy", "noeviction",
            # a new replica syncs at once (7.x waits 5 s for more replicas to share the transfer)
            "--repl-diskless-sync-delay", "0",
            # CLUSTER SLOTS lists a replica only once it has replicated a byte; an idle
            # master's first byte is its replication PING (every 10 s by default)
            "--repl-ping-replica-period", "1",
        ]  # fmt: skip
        with (node.data_dir / "redis.log").open("ab") as out:
            node.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=node.data_dir,
                start_new_session=True,  # a terminal's Ctrl-C goes to Python, which stops us
            )

    @staticmethod
    def _kill(node: ClusterNode) -> None:
        proc = node.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        node.proc = None

    def _form(self, timeout_s: float) -> None:
        masters = self.nodes[: self.n_masters]
        replicas = self.nodes[self.n_masters :]
        for i, node in enumerate(masters):
            first = i * N_SLOTS // self.n_masters
            last = (i + 1) * N_SLOTS // self.n_masters
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(first, last))
                # distinct epochs, as redis-cli does, so no two masters start in a tie
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        with self.nodes[0].client() as c:
            for node in self.nodes[1:]:
                c.execute_command("CLUSTER", "MEET", HOST, node.port)
        self._wait(timeout_s, self._all_know_each_other, "nodes did not meet")
        ids = {}
        for node in masters:
            with node.client() as c:
                ids[node.port] = _text(c.execute_command("CLUSTER", "MYID"))
        for j, node in enumerate(replicas):
            master = masters[j % self.n_masters]
            with node.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", ids[master.port])
        self.wait_healthy(timeout_s)

    def _all_know_each_other(self) -> bool:
        for node in self.nodes:
            with node.client() as c:
                lines = _text(c.execute_command("CLUSTER", "NODES")).splitlines()
            if len(lines) > len(self.nodes):
                # a port of ours was a node of another local cluster's until it died, and that
                # cluster's gossip still calls it (seen with several test sessions at once)
                raise _StrangerError(
                    f"node {node.port} knows {len(lines)} nodes, we are {len(self.nodes)}"
                )
            if len(lines) < len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    def _health_problem(self) -> str | None:
        live = [n for n in self.nodes if n.alive]
        try:
            owners = self.slot_owners()
        except StoreError as e:
            return str(e)
        covered = sum(last - first + 1 for first, last in owners)
        if covered != N_SLOTS:
            return f"{covered} of {N_SLOTS} slots covered"
        live_ports = {n.port for n in live}
        dead_masters = {p for p, _ in owners.values()} - live_ports
        if dead_masters:
            return f"slots still owned by dead masters {sorted(dead_masters)}"
        for node in live:
            try:
                with node.client() as c:
                    info = c.info()
                    if info.get("cluster_enabled") != 1:
                        return f"node {node.port}: cluster mode off"
                    state = _text(c.execute_command("CLUSTER", "INFO"))
                    if "cluster_state:ok" not in state:
                        return f"node {node.port}: cluster_state not ok"
                    if info.get("role") == "slave" and info.get("master_link_status") != "up":
                        return f"replica {node.port}: master link down"
            except redis.RedisError as e:
                return f"node {node.port}: {e}"
        if self.n_replicas and len(live) == len(self.nodes):
            lacking = [p for p, reps in owners.values() if len(reps) < self.n_replicas]
            if lacking:
                return f"masters {sorted(lacking)} lack replicas in CLUSTER SLOTS"
        return None

    @staticmethod
    def _wait(timeout_s: float, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise StoreError(f"local Redis Cluster: {what} within {timeout_s:g}s")
            time.sleep(0.05)


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class _StrangerError(StoreError):
    """A node of another cluster joined ours."""


class _PortTakenError(StoreError):
    """A node could not bind its port or its cluster bus port."""


def _wait_ping(node: ClusterNode, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if node.proc is None or node.proc.poll() is not None:
            tail = (node.data_dir / "redis.log").read_text(errors="replace")[-2000:]
            error = _PortTakenError if "Address already in use" in tail else StoreError
            raise error(f"redis-server on port {node.port} exited while starting:\n{tail}")
        with contextlib.suppress(redis.RedisError, OSError), node.client(timeout_s=1.0) as c:
            if c.ping():
                return
        if time.monotonic() > deadline:
            raise StoreError(f"redis-server on port {node.port} did not answer in {timeout_s:g}s")
        time.sleep(0.02)
