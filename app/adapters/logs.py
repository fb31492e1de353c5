"""Log output: plain lines (the default) or one JSON object per line, each with the request and job it belongs to."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from app.ports import log_context

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and goes into the JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
FORMATS = ("plain", "json")
_HANDLER = "atelier"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", "job_id", ...extra, "error"}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "job_id"):
            value = getattr(record, name, None) or getattr(log_context, name).get()
            if value:
                entry[name] = value
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in entry})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ContextFilter(logging.Filter):
    """Plain lines end with ``[request=… job=…]`` when they belong to one."""

    def filter(self, record: logging.LogRecord) -> bool:
        pairs = (("request", log_context.request_id.get()), ("job", log_context.job_id.get()))
        found = [f"{label}={value}" for label, value in pairs if value]
        record.context = f" [{' '.join(found)}]" if found else ""
        return True


def configure_logging(log_format: str = "plain", level: str = "info") -> None:
    """One handler on stderr for the root logger (and uvicorn's loggers, which then propagate to it)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"))
        handler.addFilter(ContextFilter())
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER] + [handler]  # once, however often
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
