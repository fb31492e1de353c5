"""Load on a real server: concurrent submissions through the native and the A1111 API while /healthz is polled.

Starts ``atelier serve`` (uvicorn, one torch thread, as the server-process tests do) on a free 127.0.0.1 port
in a temporary data dir with the demo models (``atelier models init-demo``), warms it up with one job (so the
pipeline is loaded), then at once sends ``--native`` ``POST /v1/jobs`` and ``--a1111`` ``POST /sdapi/v1/txt2img``
(model ``demo``, ``--size`` px, ``--steps`` steps) while a poller asks ``/healthz`` every ``--interval``
seconds the whole time, and finally follows every accepted native job with ``GET /v1/jobs/{id}`` until it
is finished. Everything is bounded by ``--deadline`` seconds; the server is stopped in any case.

The per-key limits (queued jobs, requests per minute) are lifted unless ``--default-limits``: one client
sends the whole burst, which those limits exist to refuse.

Figures: errors (a non-2xx answer or an exception, per API and kind), submission latency p50/p95 (native:
until the 202; A1111: until its answer, generation included), /healthz p50/p99 and errors, the server's
RSS (VmRSS of its process) after the warm-up and after the load, and the final states of the native jobs.
Last line: ``{"errors", "healthz_p99_s", "rss_growth_mb", "jobs_final", "p95_s"}`` where ``p95_s`` is the
native submissions' p95 and ``jobs_final`` is true when every accepted native job reached a final state
(succeeded, failed or cancelled; the counts are in the line before). Targets: 0 errors, /healthz p99 ≤ 0.1 s,
RSS growth ≤ 100 MB.

    python -m benchmarks.load [--native 50] [--a1111 50] [--size 64] [--steps 4] [--deadline 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import emit

FINAL = ("succeeded", "failed", "cancelled")
PROMPT = "一只红色的圆在左边，蓝色背景"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 4)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.entrypoints.cli.main", *args]


class Server:
    """``atelier serve`` in a child process, its output in ``server.log`` of the data dir."""

    def __init__(self, data_dir: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ATELIER_DATA_DIR": data_dir, "OMP_NUM_THREADS": "1", **env}
        self.log = Path(data_dir) / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cli("serve", "--port", str(self.port), "--log-level", "warning"),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Poller:
    """``GET /healthz`` every ``interval`` seconds (or right after a slower answer) until stopped."""

    def __init__(self, client: httpx.AsyncClient, interval: float) -> None:
        self.client, self.interval = client, interval
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        while not self.stopped.is_set():
            start = time.perf_counter()
            try:
                reply = await self.client.get("/healthz")
                if reply.status_code != 200:
                    self.errors[f"status {reply.status_code}"] += 1
            except httpx.HTTPError as error:
                self.errors[type(error).__name__] += 1
            elapsed = time.perf_counter() - start
            self.latencies.append(elapsed)
            await asyncio.sleep(max(0.0, self.interval - elapsed))


async def timed(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[float, httpx.Response | str]:
    start = time.perf_counter()
    try:
        reply: httpx.Response | str = await client.post(path, json=body)
    except httpx.HTTPError as error:
        reply = type(error).__name__
    return time.perf_counter() - start, reply


async def follow(client: httpx.AsyncClient, job_id: str, until: float) -> str:
    """The job's final status, or its last one when ``until`` passes first."""
    status = "unknown"
    while time.monotonic() < until:
        try:
            reply = await client.get(f"/v1/jobs/{job_id}")
            if reply.status_code == 200:
                status = reply.json()["status"]
                if status in FINAL:
                    return status
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    return status


def summarize(results: list[tuple[float, httpx.Response | str]]) -> tuple[dict[str, Any], list[httpx.Response]]:
    errors: Counter[str] = Counter()
    ok: list[httpx.Response] = []
    for _, reply in results:
        if isinstance(reply, str):
            errors[reply] += 1
        elif not 200 <= reply.status_code < 300:
            errors[f"status {reply.status_code}"] += 1
        else:
            ok.append(reply)
    latencies = [elapsed for elapsed, _ in results]
    figures = {
        "sent": len(results),
        "ok": len(ok),
        "errors": dict(errors),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": round(max(latencies), 4) if latencies else None,
    }
    return figures, ok


async def load(server: Server, args: argparse.Namespace, until: float) -> dict[str, Any]:
    assert server.proc is not None
    pid = server.proc.pid
    limits = httpx.Limits(max_connections=args.native + args.a1111 + 20, max_keepalive_connections=args.native + 20)
    timeout = httpx.Timeout(max(1.0, until - time.monotonic()))
    async with (
        httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(base_url=server.url, timeout=timeout) as health_client,
    ):
        native = {"prompt": PROMPT, "model": "demo", "width": args.size, "height": args.size, "steps": args.steps}
        warm = await client.post("/v1/jobs", json={**native, "seed": 0})
        warm.raise_for_status()
        warm_status = await follow(client, warm.json()["id"], until)
        rss_before = rss_mb(pid)

        poller = Poller(health_client, args.interval)
        polling = asyncio.create_task(poller.run())
        a1111 = {
            "prompt": PROMPT,
            "width": args.size,
            "height": args.size,
            "steps": args.steps,
            "override_settings": {"sd_model_checkpoint": "demo"},
        }
        start = time.perf_counter()
        sends = [timed(client, "/v1/jobs", {**native, "seed": i}) for i in range(args.native)]
        sends += [timed(client, "/sdapi/v1/txt2img", {**a1111, "seed": i}) for i in range(args.a1111)]
        results = await asyncio.gather(*sends)
        native_figures, accepted = summarize(results[: args.native])
        a1111_figures, _ = summarize(results[args.native :])
        statuses = Counter(await asyncio.gather(*(follow(client, r.json()["id"], until) for r in accepted)))
        load_s = time.perf_counter() - start
        poller.stopped.set()
        await polling
        rss_after = rss_mb(pid)
    return {
        "warm_up_status": warm_status,
        "load_s": round(load_s, 2),
        "native": native_figures,
        "a1111": a1111_figures,
        "native_jobs": {"accepted": len(accepted), "statuses": dict(statuses)},
        "healthz": {
            "requests": len(poller.latencies),
            "errors": dict(poller.errors),
            "p50_s": percentile(poller.latencies, 50),
            "p99_s": percentile(poller.latencies, 99),
            "max_s": round(max(poller.latencies), 4) if poller.latencies else None,
        },
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--native", type=int, default=50, help="concurrent POST /v1/jobs")
    parser.add_argument("--a1111", type=int, default=50, help="concurrent POST /sdapi/v1/txt2img")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between /healthz requests")
    parser.add_argument("--deadline", type=float, default=600, help="seconds for everything, setup included")
    parser.add_argument("--default-limits", action="store_true", help="keep the per-key limits of the server")
    args = parser.parse_args()
    until = time.monotonic() + args.deadline

    env = {} if args.default_limits else {"ATELIER_MAX_QUEUED_JOBS": "0", "ATELIER_REQUESTS_PER_MINUTE": "0"}
    with tempfile.TemporaryDirectory() as data_dir:
        subprocess.run(
            cli("models", "init-demo"),
            env={**os.environ, "ATELIER_DATA_DIR": data_dir, "OMP_NUM_THREADS": "1"},
            check=True,
            capture_output=True,
            timeout=max(1.0, until - time.monotonic()),
        )
        server = Server(data_dir, env)
        try:
            server.start(timeout=min(120.0, max(1.0, until - time.monotonic())))
            assert server.proc is not None
            rss_started = rss_mb(server.proc.pid)
            figures = asyncio.run(asyncio.wait_for(load(server, args, until), max(1.0, until - time.monotonic())))
        finally:
            server.stop()

    errors = sum(sum(figures[api]["errors"].values()) for api in ("native", "a1111"))
    accepted = figures["native_jobs"]["accepted"]
    final = sum(count for status, count in figures["native_jobs"]["statuses"].items() if status in FINAL)
    detail: dict[str, Any] = {
        "benchmark": "load",
        "size": args.size,
        "steps": args.steps,
        "interval_s": args.interval,
        "limits": "default" if args.default_limits else "off",
        "targets": {"errors": 0, "healthz_p99_s": 0.1, "rss_growth_mb": 100},
        "rss_started_mb": round(rss_started, 1),
    }
    detail.update(figures)
    emit(
        detail,
        {
            "errors": errors,
            "healthz_p99_s": figures["healthz"]["p99_s"],
            "rss_growth_mb": round(figures["rss_after_mb"] - figures["rss_before_mb"], 1),
            "jobs_final": final == accepted,
            "p95_s": figures["native"]["p95_s"],
        },
    )


if __name__ == "__main__":
    main()
