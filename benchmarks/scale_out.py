"""Scale-out on Ray: throughput with one and two worker actors, the Ray executor's overhead, recovery after a
worker is SIGKILLed, and jobs lost.

Everything runs for real on this machine: PostgreSQL (pgserver) is the queue, a Ray cluster of a CPU-less head and
two one-CPU worker nodes runs the actors, the demo model generates. The baseline is the in-process thread executor
on the same database and jobs, with torch on one thread as in each actor (Ray gives an actor of one CPU one
thread). Throughput counts a burst of jobs submitted at once, after a warm-up that loads the model in every
worker. Recovery: a long job's actor is SIGKILLed mid-run; the time from the kill to the job's success (the lease
is max(3 heartbeats, 15 s); target: lease + 5 s).

    python -m benchmarks.scale_out [--jobs 24] [--size 64] [--steps 8] [--heartbeat 1]

Last line: {"throughput_1", "throughput_2", "ray_overhead_ratio", "recovery_s", "lost"}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import emit, environment


@contextmanager
def postgres() -> Iterator[str]:
    from app.adapters.sql.engine import normalize_url

    folder = Path(tempfile.mkdtemp(prefix="atelier-bench-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    server = pgserver.get_server(folder / "data", cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield normalize_url(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def burst(atelier: Any, jobs: int, size: int, steps: int, seed: int) -> tuple[float, list[Any]]:
    """Seconds for ``jobs`` jobs submitted at once to finish, and the finished jobs."""
    start = time.perf_counter()
    submitted = [
        atelier.submit(f"第{i}只猫在草地上", width=size, height=size, steps=steps, seed=seed + i) for i in range(jobs)
    ]
    finished = [atelier.wait(job.id, timeout=600) for job in submitted]
    return time.perf_counter() - start, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds between worker heartbeats")
    args = parser.parse_args()
    env = environment(1)
    os.environ.update({"OMP_NUM_THREADS": "1"})

    import ray

    from app.entrypoints.library import Atelier
    from app.usecases.recover_jobs import MIN_LEASE
    from tests.ray_cluster import RAY_ENV, local_ray_cluster

    os.environ.update(RAY_ENV)
    lease = max(3 * args.heartbeat, MIN_LEASE)
    everything: list[Any] = []
    detail: dict[str, Any] = {"benchmark": "scale_out", **env, **vars(args), "lease_s": lease}
    common = {"worker_heartbeat": args.heartbeat, "queue_poll": 0.2, "max_batch": 4}
    with postgres() as url, tempfile.TemporaryDirectory() as data_dir:
        with Atelier.open(database_url=url, data_dir=data_dir, start_worker=False) as atelier:
            atelier.init_demo()

        def measure(atelier: Any, name: str, warm_jobs: int) -> float:
            burst(atelier, warm_jobs, args.size, args.steps, 10_000)  # every worker loads the model
            seconds, finished = burst(atelier, args.jobs, args.size, args.steps, 0)
            everything.extend(finished)
            detail[f"{name}_s"] = round(seconds, 3)
            return seconds

        with Atelier.open(database_url=url, data_dir=data_dir, executor="threads", workers=1, **common) as atelier:
            threads_s = measure(atelier, "threads_1", 2)
        with local_ray_cluster(nodes=2, cpus_per_node=1) as cluster:
            started = time.perf_counter()
            with Atelier.open(
                database_url=url, data_dir=data_dir, executor="ray", ray_address=cluster.address, workers=1, **common
            ) as atelier:
                atelier.container.executor().describe(timeout=300)
                detail["actor_start_s"] = round(time.perf_counter() - started, 2)
                ray_1_s = measure(atelier, "ray_1", 2)
            with Atelier.open(
                database_url=url, data_dir=data_dir, executor="ray", ray_address=cluster.address, workers=2, **common
            ) as atelier:
                actors = atelier.container.executor().describe(timeout=300)
                ray_2_s = measure(atelier, "ray_2", 8)
                long = atelier.submit("一座房子", width=128, height=128, steps=60, seed=7)
                small = {"width": args.size, "height": args.size, "steps": args.steps}
                others = [atelier.submit("一只猫", **small) for _ in range(4)]
                while (job := atelier.job(long.id)).status.value == "queued":
                    time.sleep(0.05)
                victim = next(actor for actor in actors if actor["worker_id"] == job.worker_id)
                time.sleep(1.0)  # mid-run
                os.kill(victim["pid"], signal.SIGKILL)
                killed = time.perf_counter()
                requeued_s = None
                while (job := atelier.job(long.id)).attempts < 2 and not job.status.finished:
                    if requeued_s is None and job.status.value == "queued":
                        requeued_s = time.perf_counter() - killed
                    time.sleep(0.05)
                detail["recovery_s"] = round(time.perf_counter() - killed, 2)  # running again, on a live worker
                detail["requeued_s"] = round(requeued_s, 2) if requeued_s is not None else None
                recovered = atelier.wait(long.id, timeout=600)
                detail["rerun_finished_s"] = round(time.perf_counter() - killed, 2)
                detail["recovered_attempts"] = recovered.attempts
                everything.extend([recovered, *(atelier.wait(job.id, timeout=600) for job in others)])
        if ray.is_initialized():
            ray.shutdown()
    lost = sum(1 for job in everything if job.status.value != "succeeded")
    headline = {
        "throughput_1": round(args.jobs / ray_1_s, 3),
        "throughput_2": round(args.jobs / ray_2_s, 3),
        "ray_overhead_ratio": round(ray_1_s / threads_s, 3),
        "recovery_s": detail["recovery_s"],
        "lost": lost,
    }
    detail |= {"threads_throughput_1": round(args.jobs / threads_s, 3), "jobs_total": len(everything)}
    emit(detail, headline)


if __name__ == "__main__":
    main()
