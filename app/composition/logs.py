"""Log output for the process: plain or JSON lines (the adapter), chosen by the settings."""

from __future__ import annotations


def configure_logging(log_format: str = "plain", level: str = "info") -> None:
    """Plain lines, or one JSON object per line with the request id and job id of each."""
    from app.adapters.logs import configure_logging as configure

    configure(log_format, level)
