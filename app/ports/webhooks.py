"""Job callbacks: a URL a job names is called once when the job ends."""

from __future__ import annotations

from typing import Protocol

from app.domain.jobs import GenerationJob


class JobCallbacks(Protocol):
    def check(self, url: str) -> str:
        """The URL as it will be called, or ``InvalidParameters`` (callbacks off, a host off the allow-list,
        a scheme other than http(s), credentials in the URL); at submission, so a refused job is never stored."""

    def job_ended(self, job: GenerationJob) -> None:
        """Deliver the ended job to its ``callback_url`` in the background (signed, retried with back-off);
        returns at once. A job without a callback URL is ignored."""
