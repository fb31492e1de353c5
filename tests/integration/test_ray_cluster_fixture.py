"""The real local Ray cluster of tests/ray_cluster.py: actors pinned to its worker nodes, an actor restarted
after its process is SIGKILLed, a killed node replaced, and no process of the cluster left once it stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.ray_cluster import LocalRayCluster, local_ray_cluster

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cluster helper reads /proc"),
]


@ray.remote(max_restarts=-1)
class Probe:
    def where(self) -> tuple[str, int]:
        """(id of the node it runs on, pid of its process)."""
        return ray.get_runtime_context().get_node_id(), os.getpid()


def _pinned_probe(resource_name: str) -> Any:
    return Probe.options(num_cpus=1, resources={resource_name: 0.01}).remote()


def _node_ids() -> dict[str, str]:
    """Custom resource -> id of the live node carrying it."""
    return {r: n["NodeID"] for n in ray.nodes() if n["Alive"] for r in n["Resources"]}


def _where_after_restart(probe: Any, old_pid: int, timeout: float = 30.0) -> tuple[str, int]:
    """The probe's (node id, pid) once a new process of it answers."""
    deadline = time.monotonic() + timeout
    while True:
        with suppress(ray.exceptions.RayError):
            node_id, pid = ray.get(probe.where.remote(), timeout=5)
            if pid != old_pid:
                return node_id, pid
        assert time.monotonic() < deadline, f"the actor was not restarted within {timeout} s"
        time.sleep(0.2)


def _rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total / 2**20


def _assert_gone(cluster: LocalRayCluster) -> None:
    assert cluster.processes() == []
    mentions = re.compile(rf"{re.escape(cluster.temp_dir)}|[:=]{cluster.port}\b")
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True).stdout
    assert [line for line in ps.splitlines() if not line.startswith("Z") and mentions.search(line)] == []
    assert not Path(cluster.temp_dir).exists()


def test_actors_are_placed_per_node_and_restarted_after_sigkill() -> None:
    t0 = time.monotonic()
    with local_ray_cluster(nodes=2) as cluster:
        started = time.monotonic()
        assert cluster.node_resources == ["atelier_node_0", "atelier_node_1"]
        assert set(cluster.raylet_pids()) == set(cluster.node_resources)
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            probes = [_pinned_probe(name) for name in cluster.node_resources]
            where = ray.get([p.where.remote() for p in probes], timeout=60)
            placed = time.monotonic()
            node_ids = _node_ids()
            assert [node for node, _ in where] == [node_ids[name] for name in cluster.node_resources]
            assert len({node for node, _ in where}) == 2
            pids = cluster.processes()
            rss = _rss_mib(pids)

            node, pid = where[1]
            os.kill(pid, signal.SIGKILL)
            assert _where_after_restart(probes[1], pid)[0] == node  # back on its pinned node
            restarted = time.monotonic()
        finally:
            ray.shutdown()
    stopped = time.monotonic()
    _assert_gone(cluster)
    print(
        f"\nray cluster: start {started - t0:.1f} s, actor placement {placed - started:.1f} s, "
        f"actor restart {restarted - placed:.1f} s, stop {stopped - restarted:.1f} s, "
        f"cluster RSS with both actors up {rss:.0f} MiB in {len(pids)} processes"
    )


def test_a_killed_node_is_replaced_and_its_actor_restarts_there() -> None:
    with local_ray_cluster(nodes=1) as cluster:
        ray.init(address=cluster.address, log_to_driver=False)
        probe = _pinned_probe("atelier_node_0")
        node, pid = ray.get(probe.where.remote(), timeout=60)
        raylet = cluster.raylet_pids()["atelier_node_0"]

        cluster.kill_node("atelier_node_0")
        assert cluster.node_resources == [] and cluster.raylet_pids() == {}
        assert not {raylet, pid} & set(cluster.processes())
        cluster.add_node("atelier_node_0")
        assert cluster.node_resources == ["atelier_node_0"]
        assert cluster.raylet_pids()["atelier_node_0"] != raylet

        new_node, _ = _where_after_restart(probe, pid, timeout=60)
        assert new_node != node and new_node == _node_ids()["atelier_node_0"]
    assert not ray.is_initialized()  # stop() disconnected the driver
    _assert_gone(cluster)
