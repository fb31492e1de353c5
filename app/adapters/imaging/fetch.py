"""Fetch input images by URL without letting a request reach what the deployment does not expose (SSRF).

Every hop (the URL and each redirect, at most ``MAX_REDIRECTS``) is checked: http/https only, no credentials,
the host on the allow-list (exactly, or below a ``*.example.com`` wildcard; lower-case IDNA form), and every
address the host resolves to public unless ``allow_private``. Cloud metadata addresses are refused always.

DNS rebinding: the name is resolved once, here, and the connection goes to the address that was checked. The
request URL carries that IP; the ``Host`` header and, for https, the ``sni_hostname`` extension carry the name,
so TLS sends SNI for the name and verifies the certificate against it. httpx never resolves the name again.
Keep-alive is off, so a TLS connection made for one name is never reused for another name on the same address,
and ``trust_env`` is off, so no proxy from the environment resolves the URL instead.

Limits: a Content-Length over ``max_bytes`` is refused before the body is read, the body is streamed and dropped
once past ``max_bytes``, and ``timeout`` is a deadline for the whole fetch: each network operation gets the time
left and the deadline is checked between chunks (a trickling server is cut off within twice ``timeout``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable

import httpx

from app.domain.errors import InvalidImage, InvalidParameters
from app.ports.generation import ImageFetcher

MAX_REDIRECTS = 3
DISABLED = "URL fetching is not enabled on this deployment; upload the image instead (as base64 or a multipart upload)."
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in resolver order (an IP literal resolves to itself)."""
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def is_public(address: Address) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses, also when they
    hide inside an IPv6 address (IPv4-mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not is_public(inner):
            return False
    flags = (address.is_private, address.is_loopback, address.is_link_local, address.is_multicast)
    return address.is_global and not any(flags) and not address.is_reserved and not address.is_unspecified


def normal_host(host: str) -> str:
    """A host name or IP literal as the allow-list compares it: lower-case, IDNA (punycode), no trailing dot."""
    host = host.strip().lower().rstrip(".")
    if ":" in host or (host.startswith("[") and host.endswith("]")):
        return str(ipaddress.ip_address(host.strip("[]")))
    return httpx.URL(f"http://{host}/").raw_host.decode("ascii").lower().rstrip(".")


def checked_address(url: httpx.URL, allow_private: bool = False) -> str:
    """Resolve the URL's host once; every address must be public (or private ones allowed) and none a cloud
    metadata address. Returns the first, the one to connect to. ``InvalidImage`` (``image_fetch_failed``) when
    the host does not resolve, ``InvalidParameters`` (``url_not_allowed``) for a refused address."""
    host = url.raw_host.decode("ascii")
    try:
        found = resolve(host, url.port or (443 if url.scheme == "https" else 80))
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
    except (OSError, UnicodeError, ValueError) as e:
        raise InvalidImage(f"The host {host!r} cannot be resolved.", code="image_fetch_failed") from e
    if not addresses:
        raise InvalidImage(f"The host {host!r} cannot be resolved.", code="image_fetch_failed")
    for address in addresses:
        if address in METADATA_ADDRESSES or not (allow_private or is_public(address)):
            raise InvalidParameters(
                f"The host {host!r} resolves to {address}, a private or reserved address; it cannot be fetched.",
                code="url_not_allowed",
            )
    return found[0]


class HttpImageFetcher(ImageFetcher):
    """Downloads image bytes with httpx (sync) under an allow-list and size and time limits."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        max_bytes: int,
        timeout: float,
        allow_private: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        entries = [entry.strip() for entry in allowed_hosts if entry.strip()]
        try:
            self._exact = {normal_host(e) for e in entries if not e.startswith("*.")}
            self._suffixes = {"." + normal_host(e[2:]) for e in entries if e.startswith("*.")}
        except (ValueError, httpx.InvalidURL) as e:
            raise InvalidParameters(f"fetch_allowed_hosts has an invalid entry: {e}.", code="invalid_setting") from e
        self.max_bytes, self.timeout, self.allow_private = max_bytes, timeout, allow_private
        limits = httpx.Limits(max_keepalive_connections=0)
        self._client = httpx.Client(transport=transport, trust_env=False, follow_redirects=False, limits=limits)

    def fetch(self, url: str) -> bytes:
        if not self._exact and not self._suffixes:
            raise InvalidParameters(DISABLED, code="url_fetching_disabled")
        deadline = time.monotonic() + self.timeout
        target = self._checked_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            location, body = self._get(target, self._checked_address(target), deadline)
            if location is None:
                return body
            target = self._checked_url(location, base=target)
        raise InvalidImage(f"The image URL redirected more than {MAX_REDIRECTS} times.", code="image_fetch_failed")

    def close(self) -> None:
        self._client.close()

    def _checked_url(self, url: str, base: httpx.URL | None = None) -> httpx.URL:
        try:
            parsed = base.join(url) if base is not None else httpx.URL(url)
            host = normal_host(parsed.host) if parsed.host else ""
        except (ValueError, httpx.InvalidURL) as e:
            raise InvalidParameters("The image URL is not valid.", code="invalid_url", detail=str(e)) from e
        if parsed.scheme not in ("http", "https"):
            raise InvalidParameters("Only http and https image URLs can be fetched.", code="url_not_allowed")
        if parsed.userinfo:
            raise InvalidParameters("Image URLs must not carry credentials.", code="url_not_allowed")
        if not host or not (host in self._exact or any(host.endswith(s) for s in self._suffixes)):
            raise InvalidParameters(
                f"The host {host!r} is not on this deployment's allow-list for image URLs.", code="url_not_allowed"
            )
        return parsed

    def _checked_address(self, url: httpx.URL) -> str:
        return checked_address(url, self.allow_private)

    def _get(self, url: httpx.URL, address: str, deadline: float) -> tuple[str | None, bytes]:
        """One request pinned to ``address``: (redirect location, b"") or (None, body)."""
        headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*", "Accept-Encoding": "identity"}
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        try:
            pinned = url.copy_with(host=address)
            timeout = httpx.Timeout(self._time_left(deadline))
            with self._client.stream("GET", pinned, headers=headers, extensions=extensions, timeout=timeout) as reply:
                if reply.status_code in _REDIRECTS and reply.headers.get("location"):
                    return reply.headers["location"], b""
                return None, self._body(reply, deadline)
        except httpx.TimeoutException as e:
            raise self._timed_out() from e
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            reason = str(e) or type(e).__name__
            raise InvalidImage(f"The image could not be downloaded: {reason}.", code="image_fetch_failed") from e

    def _body(self, reply: httpx.Response, deadline: float) -> bytes:
        if not reply.is_success:
            message = f"The image URL answered HTTP {reply.status_code} {reply.reason_phrase}".rstrip() + "."
            raise InvalidImage(message, code="image_fetch_failed")
        length = reply.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self.max_bytes:
            raise self._too_large(f"{length} bytes")
        chunks: list[bytes] = []
        size = 0
        for chunk in reply.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large(f"over {self.max_bytes} bytes")
            self._time_left(deadline)
            chunks.append(chunk)
        return b"".join(chunks)

    def _time_left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out()
        return left

    def _timed_out(self) -> InvalidImage:
        return InvalidImage(f"The image download took longer than {self.timeout:g} s.", code="image_fetch_timeout")

    def _too_large(self, size: str) -> InvalidImage:
        return InvalidImage(f"The image is {size}; the limit is {self.max_bytes} bytes.", code="image_too_large")
