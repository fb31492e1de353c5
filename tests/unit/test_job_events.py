"""Job announcements in one process: a watch wakes on its job's changes (or, for the queue, on a queued job), from
threads and in an event loop, and hears nothing once closed."""

from __future__ import annotations

import asyncio
import threading

from app.adapters.events import LocalJobEvents
from app.ports.job_events import QUEUE


def test_a_watch_wakes_on_its_own_jobs_changes_only() -> None:
    events = LocalJobEvents()
    mine, queue = events.watch("a"), events.watch(QUEUE)
    events.announce([("b", "running")])
    assert not mine.wait(0.01) and not queue.wait(0.01)
    events.announce([("a", "running")])
    assert mine.wait(0.01) and not queue.wait(0.01)
    assert not mine.wait(0.01)  # each announcement wakes one wait
    events.announce([("c", "queued")])
    assert queue.wait(0.01) and not mine.wait(0.01)
    mine.close()
    events.announce([("a", "succeeded")])
    assert not mine.wait(0.01)


def test_an_event_loop_waits_without_a_thread_and_wakes_from_another_thread() -> None:
    events = LocalJobEvents()
    watch = events.watch("a")

    async def scenario() -> tuple[bool, bool]:
        quiet = await watch.wait_async(0.05)
        threading.Timer(0.05, lambda: events.announce([("a", "running")])).start()
        woken = await watch.wait_async(5)
        return quiet, woken

    assert asyncio.run(scenario()) == (False, True)
    watch.close()
