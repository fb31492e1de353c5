"""Pure pieces of the request guards: text checks, the token bucket, the caller of a key, the work limit."""

from __future__ import annotations

import pytest

from app.domain.errors import InvalidParameters
from app.domain.generation import GenerationParams
from app.domain.text import MAX_DEPTH, check_document, repaired, repaired_tree, require_text
from app.entrypoints.http.auth import LOCAL, identify, is_public, needs_admin, owner_of
from app.entrypoints.http.guards import TokenBuckets, problem_in_json
from app.settings import Settings, load_settings
from app.usecases.submit_generation import check_work


def test_lone_surrogates_are_refused_and_pairs_are_text() -> None:
    assert require_text("猫 😀", "prompt") == "猫 😀"
    with pytest.raises(InvalidParameters) as caught:
        require_text("a\udfffb", "negative_prompt")
    assert caught.value.field == "negative_prompt" and caught.value.code == "invalid_text"
    with pytest.raises(InvalidParameters) as nested:
        check_document({"loras": [{"name": "x\ud800"}]})
    assert nested.value.field == "loras.0.name"
    with pytest.raises(InvalidParameters):
        GenerationParams(prompt="猫", model="demo", negative_prompt="\udfff")


def test_depth_is_bounded_and_stored_rows_are_repaired() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(InvalidParameters, match="deeper"):
        check_document(deep)
    check_document([[[1]]])
    assert repaired("x\udfffy") == "x\ufffdy" and repaired("ok") == "ok"
    assert repaired_tree({"a": ["\ud800", 1]}) == {"a": ["\ufffd", 1]}
    assert problem_in_json(b"[" * 100_000 + b"]" * 100_000) is not None
    assert problem_in_json(b'{"prompt": "\\udfff"}') is not None
    assert problem_in_json(b'{"prompt": "\\ud83d\\ude00"}') is None
    assert problem_in_json(b"not json") is None  # the route answers that in its own words


def test_token_bucket_allows_a_minute_of_burst_then_refills() -> None:
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert [buckets.take("a", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a", 3)
    assert wait == pytest.approx(20.0)  # one token every 20 s at 3 a minute
    assert buckets.take("b", 3) == 0.0  # per key
    now[0] = 20.0
    assert buckets.take("a", 3) == 0.0


def test_callers_of_keys() -> None:
    open_ = Settings()
    assert identify(open_, "") is LOCAL and LOCAL.admin
    keyed = Settings(api_keys=("u",), admin_keys=("r",))
    assert identify(keyed, "") is None and identify(keyed, "nope") is None
    user, root = identify(keyed, "u"), identify(keyed, "r")
    assert user is not None and not user.admin and user.owner == owner_of("u") != "u"
    assert root is not None and root.admin
    assert is_public(keyed, "/healthz") and is_public(keyed, "/studio/studio.js") and is_public(keyed, "/docs")
    assert not is_public(Settings(docs_public=False), "/openapi.json") and not is_public(keyed, "/v1/jobs")
    assert needs_admin("/v1/edits") and needs_admin("/v1/edits/rollback") and not needs_admin("/v1/editsx")


def test_job_work_limit() -> None:
    params = GenerationParams(prompt="猫", model="demo", width=64, height=64, steps=20, num_images=2)
    check_work(params, 64 * 64 * 20 * 2)
    check_work(params, 0)
    with pytest.raises(InvalidParameters) as caught:
        check_work(params, 64 * 64 * 20 * 2 - 1)
    assert caught.value.code == "job_too_large"


def test_limit_settings_are_checked() -> None:
    assert load_settings(environ={"ATELIER_ADMIN_KEYS": "a, b", "ATELIER_MAX_QUEUED_JOBS": "3"}).admin_keys == (
        "a",
        "b",
    )
    with pytest.raises(InvalidParameters):
        load_settings(environ={"ATELIER_REQUESTS_PER_MINUTE": "-1"})
    with pytest.raises(InvalidParameters):
        load_settings(environ={"ATELIER_PUBLIC_BASE_URL": "evil.example"})
