"""Job callbacks over HTTP: signed, retried with back-off, to allow-listed hosts only.

``POST callback_url`` with the ended job as JSON (``{"event": "job.ended", "job": {...}}``) and headers:

- ``X-Atelier-Event: job.ended`` and ``X-Atelier-Delivery``: an id, the same on every retry of one delivery;
- ``X-Atelier-Signature: t=UNIX,v1=HEX``: HMAC-SHA256 of ``"{t}.{body}"`` with the deployment's webhook secret,
  so a receiver checks that Atelier sent it and that it is fresh.

A 2xx answer ends the delivery; a network error, a timeout, 408, 429 or a 5xx is retried after 1, 2, 4, ...
seconds up to ``attempts`` times; any other answer is final. Every hop is checked as image URLs are (the host on
the allow-list, resolved once to public addresses unless private ones are allowed, no redirects followed), so a
callback cannot reach what the deployment does not expose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from app.adapters.imaging.fetch import checked_address, normal_host
from app.domain.errors import InvalidImage, InvalidParameters
from app.domain.jobs import GenerationJob
from app.ports import log_context
from app.ports.webhooks import JobCallbacks

log = logging.getLogger(__name__)
DISABLED = "Job callbacks are not enabled on this deployment (ATELIER_WEBHOOK_ALLOWED_HOSTS is empty)."
_RETRIED = frozenset({408, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Atelier-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def job_payload(job: GenerationJob, public_base_url: str | None = None) -> dict[str, Any]:
    """What a callback receives of the job: as ``GET /v1/jobs/{id}`` shows it, without its parameters."""
    base = (public_base_url or "").rstrip("/")
    return {
        "id": job.id,
        "status": job.status.value,
        "model": job.params.model,
        "seed": job.seed,
        "images": [
            {"id": i.id, "url": f"{base}/v1/images/{i.id}", "seed": i.seed, "width": i.width, "height": i.height}
            for i in job.images
        ],
        "error": {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


class HttpJobCallbacks(JobCallbacks):
    """One background thread delivers callbacks in order of the jobs' ends; ``close`` waits for it briefly."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        secret: str,
        *,
        allow_private: bool = False,
        public_base_url: str | None = None,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        entries = [entry.strip() for entry in allowed_hosts if entry.strip()]
        self._exact = {normal_host(e) for e in entries if not e.startswith("*.")}
        self._suffixes = {"." + normal_host(e[2:]) for e in entries if e.startswith("*.")}
        self._secret, self._allow_private, self._base = secret, allow_private, public_base_url
        self._timeout, self._attempts, self._backoff, self._clock = timeout, max(1, attempts), backoff, clock
        self._client = httpx.Client(transport=transport, trust_env=False, follow_redirects=False)
        self._queue: queue.Queue[tuple[str, bytes, str | None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self, url: str) -> str:
        if not self._exact and not self._suffixes:
            raise InvalidParameters(DISABLED, code="webhooks_disabled", field="callback_url")
        try:
            parsed = httpx.URL(url)
            host = normal_host(parsed.host) if parsed.host else ""
        except (ValueError, httpx.InvalidURL) as e:
            raise InvalidParameters(
                "callback_url is not a valid URL.", code="invalid_callback_url", field="callback_url"
            ) from e
        if parsed.scheme not in ("http", "https") or parsed.userinfo:
            raise InvalidParameters(
                "callback_url must be http or https, without credentials.", code="url_not_allowed", field="callback_url"
            )
        if not host or not (host in self._exact or any(host.endswith(s) for s in self._suffixes)):
            raise InvalidParameters(
                f"The host {host!r} is not on this deployment's allow-list for callbacks.",
                code="url_not_allowed",
                field="callback_url",
            )
        return str(parsed)

    def job_ended(self, job: GenerationJob) -> None:
        url = job.params.callback_url
        if url is None:
            return
        body = json.dumps({"event": "job.ended", "job": job_payload(job, self._base)}, ensure_ascii=False).encode()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._deliver_all, name="atelier-callbacks", daemon=True)
                self._thread.start()
        self._queue.put((url, body, log_context.request_id.get()))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def _deliver_all(self) -> None:
        while (item := self._queue.get()) is not None:
            url, body, request_id = item
            token = log_context.request_id.set(request_id)
            try:
                self._deliver(url, body)
            except Exception as e:  # keep the thread alive for the next callback
                log.warning("callback to %s failed: %s", url, e)
            finally:
                log_context.request_id.reset(token)

    def _deliver(self, url: str, body: bytes) -> None:
        delivery = uuid.uuid4().hex
        for attempt in range(1, self._attempts + 1):
            status, reason = self._post(url, body, delivery)
            if status is not None and 200 <= status < 300:
                log.info("callback delivered", extra={"event": "callback", "status": status, "attempt": attempt})
                return
            final = status is not None and status < 500 and status not in _RETRIED
            log.warning(
                "callback attempt %d failed: %s", attempt, reason, extra={"event": "callback", "status": status}
            )
            if final or attempt == self._attempts:
                return
            time.sleep(self._backoff * 2 ** (attempt - 1))

    def _post(self, url: str, body: bytes, delivery: str) -> tuple[int | None, str]:
        """(HTTP status, reason) of one attempt; the status is None when no answer came."""
        try:
            target = httpx.URL(self.check(url))
            address = checked_address(target, self._allow_private)
        except (InvalidParameters, InvalidImage) as e:
            return 400, e.message  # the host left the allow-list or resolves privately now: final
        headers = {
            "Host": target.netloc.decode("ascii"),
            "Content-Type": "application/json",
            "User-Agent": "Atelier-Callbacks",
            "X-Atelier-Event": "job.ended",
            "X-Atelier-Delivery": delivery,
            "X-Atelier-Signature": signature(self._secret, int(self._clock()), body),
        }
        extensions = {"sni_hostname": target.raw_host.decode("ascii")} if target.scheme == "https" else {}
        try:
            reply = self._client.post(
                target.copy_with(host=address), content=body, headers=headers, extensions=extensions,
                timeout=self._timeout,
            )  # fmt: skip
        except httpx.HTTPError as e:
            return None, str(e) or type(e).__name__
        return reply.status_code, f"HTTP {reply.status_code}"


class NoCallbacks(JobCallbacks):
    """Callbacks off: a job that names one is refused at submission."""

    def check(self, url: str) -> str:
        raise InvalidParameters(DISABLED, code="webhooks_disabled", field="callback_url")

    def job_ended(self, job: GenerationJob) -> None:
        return None
