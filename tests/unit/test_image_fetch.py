"""app.adapters.imaging.fetch: allow-list, address checks, pinning, redirects, size and time limits, through
httpx.MockTransport and a fake resolver (no socket is opened)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from app.adapters.imaging import fetch
from app.adapters.imaging.fetch import HttpImageFetcher, is_public, resolve
from app.domain.errors import InvalidImage, InvalidParameters

PUBLIC, PUBLIC_V6 = "93.184.216.34", "2606:4700:4700::1111"
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10
DNS = {
    "images.example.com": [PUBLIC],
    "cdn.images.example.com": [PUBLIC_V6],
    "other.example.com": ["93.184.216.35"],
    "xn--r8jz45g.jp": [PUBLIC],
    "internal.example.com": ["10.0.0.5"],
    "mixed.example.com": [PUBLIC, "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Swap the resolver for the DNS table above; the list records every lookup."""
    seen: list[str] = []

    def fake_resolve(host: str, port: int) -> list[str]:
        seen.append(host)
        if host.rstrip(".") not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return DNS[host.rstrip(".")]

    monkeypatch.setattr(fetch, "resolve", fake_resolve)
    return seen


class Recorder:
    """A MockTransport handler that records the requests and answers with ``reply``."""

    def __init__(self, reply: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply or (lambda request: httpx.Response(200, content=PNG))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)


def fetcher(
    recorder: Recorder, hosts: tuple[str, ...] = ("*.example.com",), max_bytes: int = 1000, allow_private: bool = False
) -> HttpImageFetcher:
    transport = httpx.MockTransport(recorder)
    return HttpImageFetcher(hosts, max_bytes=max_bytes, timeout=2.0, allow_private=allow_private, transport=transport)


def test_success_returns_the_bytes_from_the_checked_address(lookups: list[str]) -> None:
    recorder = Recorder()
    assert fetcher(recorder).fetch("http://images.example.com/cat.png?x=1") == PNG
    (request,) = recorder.requests
    assert str(request.url) == f"http://{PUBLIC}/cat.png?x=1"  # pinned: no second lookup in httpx
    assert request.headers["host"] == "images.example.com"
    assert "sni_hostname" not in request.extensions and lookups == ["images.example.com"]


def test_https_sends_sni_and_host_for_the_name_and_keeps_the_port(lookups: list[str]) -> None:
    recorder = Recorder()
    fetcher(recorder).fetch("https://CDN.Images.Example.com:8443/a.png")
    (request,) = recorder.requests
    assert str(request.url) == f"https://[{PUBLIC_V6}]:8443/a.png"
    assert request.headers["host"] == "cdn.images.example.com:8443"
    assert request.extensions["sni_hostname"] == "cdn.images.example.com"


@pytest.mark.parametrize(
    ("hosts", "url", "allowed"),
    [
        (("images.example.com",), "http://images.example.com/a", True),
        (("IMAGES.example.COM",), "http://Images.Example.Com./a", True),
        (("images.example.com",), "http://other.example.com/a", False),
        (("*.example.com",), "http://cdn.images.example.com/a", True),
        (("*.example.com",), "http://example.com/a", False),
        (("*.example.com",), "http://images.example.com.evil.org/a", False),
        (("*.images.example.com",), "http://images.example.com/a", False),
        (("例え.jp",), "http://xn--r8jz45g.jp/a", True),
        (("xn--r8jz45g.jp",), "http://例え.JP/a", True),
    ],
)
def test_allow_list_exact_wildcard_case_and_idna(
    lookups: list[str], hosts: tuple[str, ...], url: str, allowed: bool
) -> None:
    recorder = Recorder()
    if allowed:
        assert fetcher(recorder, hosts).fetch(url) == PNG
        assert len(recorder.requests) == 1
    else:
        with pytest.raises(InvalidParameters) as caught:
            fetcher(recorder, hosts).fetch(url)
        assert caught.value.code == "url_not_allowed" and "allow-list" in caught.value.message
        assert recorder.requests == [] and lookups == []


def test_with_an_empty_allow_list_fetching_is_off(lookups: list[str]) -> None:
    recorder = Recorder()
    with pytest.raises(InvalidParameters) as caught:
        fetcher(recorder, ()).fetch("http://images.example.com/a.png")
    assert caught.value.code == "url_fetching_disabled" and not isinstance(caught.value, InvalidImage)
    assert "not enabled on this deployment" in caught.value.message and "upload the image" in caught.value.message
    assert recorder.requests == [] and lookups == []


@pytest.mark.parametrize(
    "url",
    ["ftp://images.example.com/a.png", "file:///etc/passwd", "http://user:pw@images.example.com/a", "http:///a"],
)
def test_other_schemes_credentials_and_hostless_urls_are_refused(lookups: list[str], url: str) -> None:
    recorder = Recorder()
    with pytest.raises(InvalidParameters) as caught:
        fetcher(recorder).fetch(url)
    assert not isinstance(caught.value, InvalidImage)
    assert recorder.requests == [] and lookups == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    ],
)
def test_private_and_reserved_addresses_are_refused_before_connecting(
    lookups: list[str], address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DNS, "target.example.com", [address])
    recorder = Recorder()
    with pytest.raises(InvalidParameters) as caught:
        fetcher(recorder).fetch("http://target.example.com/a.png")
    assert caught.value.code == "url_not_allowed" and "private or reserved" in caught.value.message
    assert recorder.requests == []


def test_public_addresses_pass_the_check() -> None:
    import ipaddress

    assert all(is_public(ipaddress.ip_address(a)) for a in (PUBLIC, PUBLIC_V6, "2002:5db8:d822::"))


def test_every_resolved_address_must_be_public(lookups: list[str]) -> None:
    recorder = Recorder()
    with pytest.raises(InvalidParameters, match=re.escape("127.0.0.1")):
        fetcher(recorder).fetch("http://mixed.example.com/a.png")
    assert recorder.requests == []


def test_allow_private_admits_intranets_but_never_cloud_metadata(lookups: list[str]) -> None:
    recorder = Recorder()
    assert fetcher(recorder, allow_private=True).fetch("http://internal.example.com/a.png") == PNG
    assert str(recorder.requests[0].url) == "http://10.0.0.5/a.png"
    with pytest.raises(InvalidParameters, match=re.escape("169.254.169.254")):
        fetcher(recorder, allow_private=True).fetch("http://metadata.example.com/latest/meta-data/")
    assert len(recorder.requests) == 1


def redirect(location: str) -> httpx.Response:
    return httpx.Response(302, headers={"location": location})


def test_a_redirect_to_a_private_address_is_refused(lookups: list[str]) -> None:
    recorder = Recorder(lambda request: redirect("http://internal.example.com/secret"))
    with pytest.raises(InvalidParameters, match=re.escape("10.0.0.5")):
        fetcher(recorder).fetch("http://images.example.com/a.png")
    assert len(recorder.requests) == 1 and lookups == ["images.example.com", "internal.example.com"]


def test_a_redirect_off_the_allow_list_is_refused(lookups: list[str]) -> None:
    recorder = Recorder(lambda request: redirect("http://evil.org/a.png"))
    with pytest.raises(InvalidParameters, match="allow-list"):
        fetcher(recorder).fetch("http://images.example.com/a.png")
    assert len(recorder.requests) == 1


def hops(count: int) -> Handler:
    """Redirect ``count`` times (relative, then absolute to another allowed host), then serve the image."""

    def reply(request: httpx.Request) -> httpx.Response:
        step = int(request.url.params.get("step", "0"))
        if step < count:
            return redirect(f"/next?step={step + 1}" if step % 2 == 0 else f"//other.example.com/n?step={step + 1}")
        return httpx.Response(200, content=PNG)

    return reply


def test_up_to_three_redirects_are_followed_each_pinned_again(lookups: list[str]) -> None:
    recorder = Recorder(hops(3))
    assert fetcher(recorder).fetch("http://images.example.com/start") == PNG
    hosts = [r.headers["host"] for r in recorder.requests]
    assert hosts == ["images.example.com", "images.example.com", "other.example.com", "other.example.com"]
    assert [str(r.url) for r in recorder.requests[1:]] == [
        f"http://{PUBLIC}/next?step=1",
        "http://93.184.216.35/n?step=2",
        "http://93.184.216.35/next?step=3",
    ]


def test_a_fourth_redirect_is_refused(lookups: list[str]) -> None:
    recorder = Recorder(hops(4))
    with pytest.raises(InvalidImage, match="more than 3"):
        fetcher(recorder).fetch("http://images.example.com/start")
    assert len(recorder.requests) == 4


class Body(httpx.SyncByteStream):
    """``chunks`` chunks of ``size`` bytes (endless when None), ``pause`` seconds apart; counts what was read."""

    def __init__(self, size: int = 100, chunks: int | None = None, pause: float = 0.0) -> None:
        self.size, self.chunks, self.pause, self.read = size, chunks, pause, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.chunks is None or self.read < self.chunks:
            time.sleep(self.pause)
            self.read += 1
            yield b"x" * self.size


def test_an_over_large_content_length_is_refused_without_reading(lookups: list[str]) -> None:
    body = Body(chunks=1)
    recorder = Recorder(lambda request: httpx.Response(200, headers={"content-length": "1001"}, stream=body))
    with pytest.raises(InvalidImage) as caught:
        fetcher(recorder, max_bytes=1000).fetch("http://images.example.com/big.png")
    assert caught.value.code == "image_too_large" and "1001" in caught.value.message and body.read == 0


def test_a_body_streaming_past_the_limit_is_aborted(lookups: list[str]) -> None:
    body = Body(size=100)  # endless, no Content-Length
    recorder = Recorder(lambda request: httpx.Response(200, stream=body))
    with pytest.raises(InvalidImage) as caught:
        fetcher(recorder, max_bytes=1000).fetch("http://images.example.com/endless.png")
    assert caught.value.code == "image_too_large" and body.read == 11
    exact = Body(size=100, chunks=10)
    recorder = Recorder(lambda request: httpx.Response(200, stream=exact))
    assert len(fetcher(recorder, max_bytes=1000).fetch("http://images.example.com/exact.png")) == 1000


def test_a_trickling_body_hits_the_overall_deadline(lookups: list[str]) -> None:
    body = Body(size=1, chunks=80, pause=0.05)  # 4 s in all, were the deadline ignored
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=body))
    slow = HttpImageFetcher(["images.example.com"], max_bytes=10_000, timeout=0.3, transport=transport)
    started = time.monotonic()
    with pytest.raises(InvalidImage) as caught:
        slow.fetch("http://images.example.com/slow.png")
    # Generous bounds: a loaded machine slows the clock-watching, but never by seconds.
    assert caught.value.code == "image_fetch_timeout" and 0.3 <= time.monotonic() - started < 2.5
    assert 1 <= body.read < 60


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ReadTimeout("timed out"), "image_fetch_timeout"),
        (httpx.ConnectError("connection refused"), "image_fetch_failed"),
        (httpx.RemoteProtocolError("peer closed"), "image_fetch_failed"),
    ],
)
def test_transport_errors_become_invalid_image(lookups: list[str], error: Exception, code: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(InvalidImage) as caught:
        fetcher(Recorder(fail)).fetch("http://images.example.com/a.png")
    assert caught.value.code == code


def test_http_errors_name_the_status(lookups: list[str]) -> None:
    recorder = Recorder(lambda request: httpx.Response(404, content=b"nope"))
    with pytest.raises(InvalidImage, match="HTTP 404 Not Found"):
        fetcher(recorder).fetch("http://images.example.com/missing.png")


def test_an_unresolvable_host_is_a_failed_download(lookups: list[str]) -> None:
    with pytest.raises(InvalidImage, match="cannot be resolved"):
        fetcher(Recorder()).fetch("http://nowhere.example.com/a.png")


def test_invalid_allow_list_entries_are_a_settings_error() -> None:
    with pytest.raises(InvalidParameters) as caught:
        HttpImageFetcher(["::zz"], max_bytes=1, timeout=1.0)
    assert caught.value.code == "invalid_setting"


def test_the_real_resolver_returns_literals_unchanged() -> None:
    assert resolve("127.0.0.1", 80) == ["127.0.0.1"] and resolve("::1", 80) == ["::1"]
