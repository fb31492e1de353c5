"""A real multi-node Ray cluster on this machine, for tests: ``local_ray_cluster()``.

It runs this environment's ``ray start`` once for a head node and once per worker node, on 127.0.0.1, each
a separate set of processes (GCS, raylets, agents, workers), as a deployment would have them:

* the head node has no CPUs, so no task or actor runs on it; worker node K has ``cpus_per_node`` CPUs and
  one unit of a custom resource ``atelier_node_K``, so a test pins an actor to node K by asking for a
  sliver of it (``resources={"atelier_node_0": 0.01}``) and can kill or re-add that node by name;
* small object stores (80 MiB by default; Ray's minimum is 75 MiB), no dashboard, no log monitor (worker
  output stays in the session's log files), no usage stats, a GCS that notices a dead node within seconds;
* its own free GCS port and a short temp dir of its own (Ray's Unix socket paths under it must stay below
  ~107 characters), so clusters of parallel test processes never meet. Ray registers the nodes under the
  host's address even when given 127.0.0.1; drivers connect with ``ray.init(address=cluster.address)``.

``ray start`` daemonizes: it launches the node's processes and returns once the node has registered with
the GCS. Each ``ray start`` runs in its own session (``setsid``), and every process of its node, workers
the raylet spawns later included (they get process groups of their own but keep the session), carries
that session id: that is how a node's processes are found and killed. ``ray stop`` is never used, since
it stops every Ray process of the user. Linux only (processes are read from /proc).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"
HEAD = "head"
START_TIMEOUT_S = 120.0
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Without it, a token in ~/.ray/auth_token (a plain local ray.init() writes one) turns token auth on
    # for the head but not for the nodes that join it, which then fail.
    "RAY_AUTH_MODE": "disabled",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "RAY_health_check_period_ms": "1000",  # a killed node is dead to the GCS after ~5 s, not ~15 s
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> Iterator[tuple[int, int, str]]:
    """(pid, session id, command line) of each live process; zombies count as gone."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if state not in ("Z", "X"):
            yield int(entry.name), int(session), cmdline.replace(b"\0", b" ").decode(errors="replace")


class LocalRayCluster:
    """A running cluster: ``address`` (``127.0.0.1:PORT``), ``temp_dir`` and ``node_resources``, the
    custom resource of each live worker node."""

    def __init__(self, cpus_per_node: int = 1, object_store_bytes: int = 80 * 1024 * 1024) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        self.node_resources: list[str] = []
        self._cpus_per_node = cpus_per_node
        self._object_store_bytes = object_store_bytes
        self._sessions: dict[str, int] = {}  # live node ("head" or its resource) -> session id
        self._all_sessions: set[int] = set()  # every node's, killed ones included

    def start(self, nodes: int) -> None:
        """Start the head node, then ``nodes`` worker nodes one at a time (concurrent ``ray start`` of one
        session race for socket and log file names)."""
        self._ray_start(
            HEAD,
            "--head",
            f"--port={self.port}",
            "--num-cpus=0",
            "--include-dashboard=false",
            f"--temp-dir={self.temp_dir}",
        )
        for k in range(nodes):
            self._start_worker(f"atelier_node_{k}")

    def add_node(self, resource_name: str) -> None:
        """Start a worker node carrying ``resource_name`` (a killed node's name may be reused)."""
        if resource_name in self._sessions:
            raise ValueError(f"node {resource_name} is already running")
        self._start_worker(resource_name)

    def kill_node(self, resource_name: str) -> None:
        """SIGKILL every process of the worker node carrying ``resource_name``: its raylet, agents and workers."""
        if resource_name not in self.node_resources:
            raise KeyError(f"no running worker node {resource_name}")
        self.node_resources.remove(resource_name)
        self._kill({self._sessions.pop(resource_name)})

    def raylet_pids(self) -> dict[str, int]:
        """Worker node resource name -> pid of that node's raylet."""
        node_of = {sid: name for name, sid in self._sessions.items() if name != HEAD}
        return {
            node_of[sid]: pid
            for pid, sid, cmdline in _processes()
            if sid in node_of and cmdline.split(" ", 1)[0].endswith("/raylet")
        }

    def node_of(self, pid: int) -> str:
        """The worker node (its resource name) a process of this cluster runs on."""
        node_of = {sid: name for name, sid in self._sessions.items() if name != HEAD}
        for found, sid, _cmdline in _processes():
            if found == pid and sid in node_of:
                return node_of[sid]
        raise KeyError(f"process {pid} runs on no live worker node of this cluster")

    def processes(self) -> list[int]:
        """Pids of the live processes of this cluster: of its nodes' sessions, or naming its temp dir."""
        return [pid for pid, sid, cmdline in _processes() if sid in self._all_sessions or self.temp_dir in cmdline]

    def stop(self) -> None:
        """Disconnect this process's driver from the cluster, if connected; kill all of the cluster's
        processes and remove its temp dir. Raises if some process of it survives."""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            with suppress(Exception):
                if ray.get_runtime_context().gcs_address.endswith(f":{self.port}"):
                    ray.shutdown()
        self._sessions.clear()
        self.node_resources.clear()
        try:
            self._kill(self._all_sessions, also_temp_dir=True)
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _start_worker(self, name: str) -> None:
        self._ray_start(
            name, f"--address={self.address}", f"--num-cpus={self._cpus_per_node}", f'--resources={{"{name}": 1}}'
        )
        self.node_resources.append(name)

    def _ray_start(self, name: str, *args: str) -> None:
        log = Path(self.temp_dir, f"ray-start-{name}.log")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    str(RAY),
                    "start",
                    *args,
                    "--node-ip-address=127.0.0.1",
                    f"--object-store-memory={self._object_store_bytes}",
                    "--include-log-monitor=false",
                    "--disable-usage-stats",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **RAY_ENV},
                start_new_session=True,
            )
        self._sessions[name] = proc.pid  # the session leader's pid is the session id
        self._all_sessions.add(proc.pid)
        try:
            returncode = proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        if returncode != 0:
            self._kill({self._sessions.pop(name)})
            raise RuntimeError(f"ray start of {name} failed ({returncode}):\n{log.read_text()[-4000:]}")

    def _kill(self, sessions: set[int], also_temp_dir: bool = False, timeout: float = 30.0) -> None:
        """SIGKILL the processes of ``sessions`` (and any naming the temp dir) until none is left; a raylet
        may spawn a worker between a scan and its kill, so scan again."""
        deadline = time.monotonic() + timeout
        while True:
            pids = [
                pid
                for pid, sid, cmdline in _processes()
                if sid in sessions or (also_temp_dir and self.temp_dir in cmdline)
            ]
            if not pids:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray processes {pids} of {self.address} survived SIGKILL")
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


@contextmanager
def local_ray_cluster(
    nodes: int = 2, cpus_per_node: int = 1, object_store_bytes: int = 80 * 1024 * 1024
) -> Iterator[LocalRayCluster]:
    """A started cluster of a CPU-less head and ``nodes`` worker nodes (``atelier_node_0`` ...), stopped on
    exit, however the body ends."""
    cluster = LocalRayCluster(cpus_per_node=cpus_per_node, object_store_bytes=object_store_bytes)
    try:
        cluster.start(nodes)
        yield cluster
    finally:
        cluster.stop()
