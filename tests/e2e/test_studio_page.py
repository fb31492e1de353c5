"""The studio page as served (no browser needed): the page, its assets, and that it works offline."""

from __future__ import annotations

import re

import httpx
import pytest

from app.entrypoints.http.studio import ASSETS

pytestmark = pytest.mark.anyio


async def test_root_serves_the_studio_with_versioned_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text and "文生图" in page.text and "{{version}}" not in page.text
    assets = re.findall(r'(?:src|href)="(/studio/[^"?]+)\?v=', page.text)
    assert sorted(assets) == ["/studio/studio.css", "/studio/studio.js"]
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000
    assert (await client.get("/studio/missing.js")).status_code == 404


async def test_studio_is_not_in_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths and all(not p.startswith("/studio") for p in paths)


def test_assets_reference_nothing_outside_the_server() -> None:
    """No CDN, no web fonts, no remote scripts: the page works with no network."""
    for asset in ASSETS.iterdir():
        text = asset.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), asset.name
        assert "@import" not in text and "url(http" not in text, asset.name


def test_every_text_key_has_both_languages() -> None:
    script = (ASSETS / "studio.js").read_text(encoding="utf-8")
    zh, en = script.split("\n  en: {", 1)
    key = re.compile(r'(?:"([\w.]+)"|\b(\w+)):\s*"')
    keys = lambda block: {a or b for a, b in key.findall(block)}  # noqa: E731
    zh_keys, en_keys = keys(zh.split("zh: {", 1)[1]), keys(en.split("\n};", 1)[0])
    assert zh_keys == en_keys, zh_keys ^ en_keys
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([\w.]+)"', (ASSETS / "index.html").read_text("utf-8")))
    assert used <= zh_keys, used - zh_keys


def test_start_up_benchmark_prints_its_headline() -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.studio", "--rounds", "1"], capture_output=True, text=True, check=True
    )
    headline = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0 < headline["studio_first_page_s"] < 60 and 0 < headline["studio_install_mb"] < 1
