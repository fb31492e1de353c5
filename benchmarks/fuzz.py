"""Fuzzing campaign: schemathesis against the app's own ``/openapi.json``, in-process over ASGI.

Every operation of the schema gets positive cases (what the schema allows) and negative ones (what it
forbids), round after round with fresh seeds, until ``--cases`` have run or ``--seconds`` are spent.
Each response is checked for a server error (status ≥ 500, an exception escaping the app, or a body
whose error code is ``internal_error`` — the Diffusers-API answers unexpected errors with 469) and for
conformance with the schema: a documented status code, the documented content type, the documented
response body. Failures are collected, not raised, so every case runs; each distinct failure is printed
once with the request that first caused it and how often it recurred.

Cases are bounded so a campaign fits a CPU: generation sizes are clamped to 64 px, steps to 4 and image
counts to 1 (values outside the accepted ranges are sent unchanged, so validation is still fuzzed); the
A1111 routes, which default to 512 px and 50 steps, get 64 px and 4 steps when a case leaves them out.
Half of the cases of operations with path parameters use the id of a real job, image, prompt session,
knowledge query or edit, so read routes answer 200 and their bodies are validated too. The event stream
(``/v1/jobs/{id}/events``) is fuzzed like the rest: a call is cut after ``CALL_TIMEOUT`` seconds and keeps
the events it got, and a finished job's stream ends after one event. The per-key
request and queue limits are off: the fuzzer is one caller sending hundreds of requests a minute.

One JSON line per operation (cases, statuses seen, distinct failures), then the headline:
``{"cases", "failures", "server_errors", "schema_violations", "operations"}`` where ``failures``,
``server_errors`` and ``schema_violations`` count failing cases (a case can fail both ways).

    python -m benchmarks.fuzz [--cases 1000] [--seconds 600] [--profile sqlite|test] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from benchmarks._common import emit

# Generation parameters sent as a cheap value when a case picks a costly one the server accepts:
# name: (cheap value, highest accepted value); values above the highest are sent unchanged.
CLAMPED = {
    "width": (64, 2048),
    "height": (64, 2048),
    "steps": (4, 150),
    "num_images": (1, 8),
    "batch_size": (1, 8),
    "n_iter": (1, 8),
    "image_num": (1, 8),
    "n": (1, 64),
    "k": (1, 16),
}
# Defaults far above the cheap range, filled in when a case leaves the field out.
FILLED = {
    "POST /sdapi/v1/txt2img": {"width": 64, "height": 64, "steps": 4},
    "POST /sdapi/v1/img2img": {"width": 64, "height": 64, "steps": 4},
    "POST /api/predict": {"steps": 4},
    "POST /v1/jobs": {"steps": 4},
    "POST /v1/prompt-sessions/{session_id}/turns": {"steps": 4, "k": 1, "n": 1},
}
SIZE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")
CALL_TIMEOUT = 120.0  # seconds; an event stream is cut there and keeps what it sent
SERVER_ERROR_CHECKS = ("not_a_server_error", "internal_error_body", "exception")


def bound(case: Any) -> None:
    """Clamp a case's costly generation parameters (see the module docstring); edits ``case.body`` in place."""
    body = case.body
    if not isinstance(body, dict):
        return
    for name, default in FILLED.get(case.operation.label, {}).items():
        body.setdefault(name, default)
    for name, (cheap, highest) in CLAMPED.items():
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and cheap < value <= highest:
            body[name] = cheap
    size = body.get("size")
    match = SIZE.match(size) if isinstance(size, str) else None
    if match and all(64 <= int(side) <= 2048 for side in match.groups()):
        body["size"] = "64x64"


def internal_error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """An unexpected error answered below 500 (the Diffusers-API's 469) still is a server error."""
    from schemathesis.core.failures import ServerError

    if response.status_code >= 500:
        return None  # not_a_server_error reports it
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = str(body.get("error_msg", "")) if isinstance(body, dict) else ""
    if code == "internal_error" or message.startswith("Internal error"):
        raise ServerError(
            operation=case.operation.label,
            status_code=response.status_code,
            title="Internal error below 500",
            message=f"Status {response.status_code} with an internal-error body: {response.text[:300]}",
        )
    return None


def checks() -> list[Callable[..., Any]]:
    """The checks every case runs: server errors first, then schema conformance."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        internal_error_body,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


def open_atelier(profile: str, data_dir: str, register: Callable[[Any], None] | None = None, **settings: Any) -> Any:
    """``test``: in-memory jobs and a pattern generator. ``sqlite``: the local profile (SQLite, the real
    demo models on CPU), with the demo models registered by ``register`` or built by ``init_demo``."""
    from app.entrypoints.library import Atelier

    limits = {"requests_per_minute": 0, "max_queued_jobs": 0, **settings}
    if profile == "test":
        return Atelier.open(data_dir=data_dir, profile="test", **limits)
    atelier = Atelier.open(data_dir=data_dir, **limits)
    if register is None:
        atelier.init_demo()
    else:
        register(atelier)
    return atelier


def known_ids(atelier: Any, knowledge: bool = True) -> dict[str, list[Any]]:
    """Real resources for the path parameters: a finished job and its image, a prompt session with one
    turn, and (``knowledge``) a knowledge query and an applied edit."""
    ids: dict[str, list[Any]] = {}
    job = atelier.wait(atelier.submit("一只猫在草地上", width=64, height=64, steps=2, seed=1).id, timeout=300)
    ids["job_id"] = [job.id]
    ids["image_id"] = [image.id for image in job.images]
    session = atelier.prompts.start("一只红色的圆在左边")
    atelier.prompts.turn(session.id, "把圆形换成蓝色", n=1, k=1, steps=2, seed=1)
    ids["session_id"] = [session.id]
    ids["turn"] = [0, 1]
    if knowledge:
        ids["query_id"] = [atelier.knowledge.ask("What is the capital of Niue?", retrieval="never").id]
        ids["edit_id"] = [atelier.edits.apply("The capital of Niue is", "Alofi").id]
    return ids


def use_known_ids(case: Any, ids: dict[str, list[Any]], pick: int) -> None:
    """Replace the generated path parameters with real ids (``pick`` chooses among several)."""
    params = case.path_parameters
    if not params:
        return
    for name in list(params):
        if ids.get(name):
            params[name] = ids[name][pick % len(ids[name])]


def describe(case: Any, response: Any | None) -> dict[str, Any]:
    """The request as sent, short enough to print."""
    body = case.body
    if isinstance(body, dict):  # the documented names first; generated extra properties after them
        body = dict(sorted(body.items(), key=lambda item: not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(item[0]))))
    text = json.dumps(body, ensure_ascii=False, default=repr) if not isinstance(body, bytes) else repr(body[:200])
    request: dict[str, Any] = {"method": case.method, "path": case.formatted_path}
    if case.query:
        request["query"] = case.query
    if body is not None and "NotSet" not in type(body).__name__:
        request["body"] = text if len(text) <= 600 else text[:600] + "…"
    if response is not None:
        request["response"] = response.text[:300]
    return request


def failure_key(failure: Any) -> str:
    """What makes two failures the same: their kind and message without the values that vary per case."""
    message = str(getattr(failure, "message", "") or failure)
    message = re.sub(r"\b[0-9a-f]{16,}\b", "<id>", message)
    return f"{type(failure).__name__}|{getattr(failure, 'title', '')}|{message[:400]}"


def check_name(failure: Any) -> str:
    from schemathesis.core.failures import ServerError

    if isinstance(failure, ExceptionFailure):
        return "exception"
    if isinstance(failure, ServerError):
        return "internal_error_body" if failure.title == "Internal error below 500" else "not_a_server_error"
    return {
        "UndefinedStatusCode": "status_code_conformance",
        "UndefinedContentType": "content_type_conformance",
        "MissingContentType": "content_type_conformance",
        "MalformedMediaType": "content_type_conformance",
        "JsonSchemaError": "response_schema_conformance",
        "MalformedJson": "response_schema_conformance",
    }.get(type(failure).__name__, type(failure).__name__)


@dataclass
class OperationReport:
    operation: str
    cases: int = 0
    positive: int = 0
    negative: int = 0
    failing_cases: int = 0
    server_error_cases: int = 0
    schema_violation_cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    distinct: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, case: Any, response: Any | None, failures: list[Any], mode: str) -> None:
        self.cases += 1
        self.positive += mode == "positive"
        self.negative += mode == "negative"
        self.statuses[str(response.status_code) if response is not None else "exception"] += 1
        kinds = {check_name(f) for f in failures}
        self.failing_cases += bool(failures)
        self.server_error_cases += bool(kinds & set(SERVER_ERROR_CHECKS))
        self.schema_violation_cases += bool(kinds - set(SERVER_ERROR_CHECKS))
        for failure in failures:
            key = failure_key(failure)
            seen = self.distinct.get(key)
            if seen:
                seen["count"] += 1
                continue
            self.distinct[key] = {
                "check": check_name(failure),
                "kind": "server_error" if check_name(failure) in SERVER_ERROR_CHECKS else "schema_violation",
                "status": response.status_code if response is not None else None,
                "title": str(getattr(failure, "title", type(failure).__name__)),
                "message": str(getattr(failure, "message", failure))[:600],
                "mode": mode,
                "request": describe(case, response),
                "count": 1,
            }

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "cases": self.cases,
            "positive": self.positive,
            "negative": self.negative,
            "failures": self.failing_cases,
            "server_errors": self.server_error_cases,
            "schema_violations": self.schema_violation_cases,
            "statuses": dict(sorted(self.statuses.items())),
            "seconds": round(self.seconds, 2),
            "distinct": sorted(self.distinct.values(), key=lambda d: (d["kind"], d["check"], -d["count"])),
        }


class ExceptionFailure(Exception):
    """An exception that escaped the application (the ASGI transport re-raises it)."""

    title = "Exception escaped the application"

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.message = f"{type(error).__name__}: {str(error)[:400]}"


def run_case(case: Any, ids: dict[str, list[Any]], use_ids: int | None) -> tuple[Any | None, list[Any]]:
    """Send one bounded case and return its response and the failures of every check."""
    from schemathesis.core.failures import FailureGroup

    bound(case)
    if use_ids is not None:
        use_known_ids(case, ids, use_ids)
    try:
        response = case.call(timeout=CALL_TIMEOUT)
    except Exception as error:  # the app raised through the transport, or the call timed out
        return None, [ExceptionFailure(error)]
    try:
        case.validate_response(response, checks=checks())
    except FailureGroup as group:
        return response, list(group.exceptions)
    except AssertionError as failure:
        return response, [failure]
    return response, []


def fuzz_operation(
    operation: Any, report: OperationReport, examples: int, seed: int, ids: dict[str, list[Any]], deadline: float
) -> None:
    """One round on one operation: ``examples`` positive and ``examples`` negative cases at most."""
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    has_inputs = bool(operation.path_parameters or operation.query or operation.headers or operation.body)
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_inputs else [])
    for mode in modes:
        if time.monotonic() > deadline:
            return
        with suppress(Unsatisfiable):  # the schema leaves no room for this mode (e.g. nothing to negate)
            fuzz_mode(operation, mode, report, examples, seed, ids, deadline)


def fuzz_mode(
    operation: Any,
    mode: Any,
    report: OperationReport,
    examples: int,
    seed: int,
    ids: dict[str, list[Any]],
    deadline: float,
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 3))
    def run(case: Any, pick: int) -> None:
        if time.monotonic() > deadline:
            return
        use_ids = pick if pick % 2 == 0 and operation.path_parameters else None
        response, failures = run_case(case, ids, use_ids)
        report.record(case, response, failures, mode.value)

    run()


@contextmanager
def served(profile: str, data_dir: str, register: Callable[[Any], None] | None = None) -> Iterator[tuple[Any, Any]]:
    """The app of ``profile`` and its schemathesis schema, loaded from ``/openapi.json`` over ASGI."""
    import schemathesis
    from schemathesis.python.asgi import shutdown_lifespans

    from app.entrypoints.http.app import create_app

    atelier = open_atelier(profile, data_dir, register)
    try:
        app = create_app(atelier)
        yield atelier, schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        shutdown_lifespans()
        atelier.close()


def campaign(
    schema: Any,
    ids: dict[str, list[Any]],
    *,
    examples: int,
    seed: int,
    seconds: float,
    cases: int = 0,
    rounds: int | None = None,
) -> list[OperationReport]:
    """Rounds over every operation, each with a fresh seed, until ``cases`` have run (or ``rounds`` are
    done) or ``seconds`` are spent."""
    operations = [result.ok() for result in schema.get_all_operations()]
    reports = {op.label: OperationReport(op.label) for op in operations}
    deadline = time.monotonic() + seconds
    round_no = 0

    def more() -> bool:
        return round_no < rounds if rounds is not None else sum(r.cases for r in reports.values()) < cases

    while time.monotonic() < deadline and more():
        before = sum(r.cases for r in reports.values())
        for op in operations:
            start = time.monotonic()
            fuzz_operation(op, reports[op.label], examples, seed * 1000 + round_no, ids, deadline)
            reports[op.label].seconds += time.monotonic() - start
        round_no += 1
        if sum(r.cases for r in reports.values()) == before:
            break  # nothing new can be generated
    return list(reports.values())


def render(reports: list[OperationReport]) -> str:
    """The distinct failures, grouped by operation, one paragraph each (for an assertion message)."""
    lines = []
    for report in reports:
        for failure in report.as_dict()["distinct"]:
            message = " ".join(failure["message"].split())[:300]
            lines.append(
                f"{report.operation}: {failure['check']} (status {failure['status']}, {failure['count']}x): "
                f"{message}\n    request: {json.dumps(failure['request'], ensure_ascii=False)[:500]}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000, help="stop after this many cases")
    parser.add_argument("--seconds", type=float, default=600, help="and after this many seconds, setup included")
    parser.add_argument("--profile", choices=["sqlite", "test"], default="sqlite")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=10, help="cases per operation, mode and round")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as data_dir, served(args.profile, data_dir) as (atelier, schema):
        ids = known_ids(atelier)
        setup_s = time.monotonic() - start
        left = args.seconds - (time.monotonic() - start)
        reports = campaign(schema, ids, examples=args.examples, seed=args.seed, seconds=left, cases=args.cases)
    for report in reports:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    detail = {
        "benchmark": "fuzz",
        "profile": args.profile,
        "seed": args.seed,
        "setup_s": round(setup_s, 1),
        "seconds": round(time.monotonic() - start, 1),
        "distinct_failures": sum(len(r.distinct) for r in reports),
    }
    emit(
        detail,
        {
            "cases": sum(r.cases for r in reports),
            "failures": sum(r.failing_cases for r in reports),
            "server_errors": sum(r.server_error_cases for r in reports),
            "schema_violations": sum(r.schema_violation_cases for r in reports),
            "operations": len(reports),
        },
    )


if __name__ == "__main__":
    main()
