"""HTTP with the URL guard enforced on every connection.

Each hop's host is resolved once (:func:`audioextract.urlguard.resolve_all`), checked,
and the connection goes to exactly that address, so a DNS answer cannot change
between the check and the connect. Redirects are followed here, hop by hop, each
hop checked again; TLS is verified against the system store or a CA file.
"""

import http.client
import socket
import ssl
from urllib.parse import quote, urljoin, urlsplit

from audioextract.api.constants import ErrorCode
from audioextract.urlguard import BlockedAddressError, resolve_all
from audioextract.worker.errors import WorkerError
from audioextract.worker.log import redact_url

# Re-exported: NetConfig lived here before it moved out to keep http.client and ssl lazy.
from audioextract.worker.netconfig import NetConfig as NetConfig

REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "audio-extract-worker/0.1"
_ASCII_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


def connect_first(addresses: list[str], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` (all already checked) that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = connect_first(self._addresses, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, addresses: list[str], timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._ctx = context

    def connect(self) -> None:
        sock = connect_first(self._addresses, self.port, self.timeout)
        # SNI and certificate checks use the URL's host name, not the pinned address.
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def connect(url: str, config: NetConfig) -> http.client.HTTPConnection:
    """A connection to the URL's host, pinned to an address the guard allows.

    A URL that cannot be parsed (a port out of range, a malformed IPv6 literal, no
    host) is SourceUnreachable: at this point it came from a server's ``Location``
    header, the task's own URLs having been validated already.
    """
    scheme, host, port = split_target(url)
    if scheme not in ("http", "https"):
        raise WorkerError(ErrorCode.SOURCE_FORBIDDEN, f"scheme {scheme!r} is not allowed")
    try:
        addresses = resolve_all(host, port, config.policy)
    except BlockedAddressError as exc:
        raise WorkerError(
            ErrorCode.SOURCE_FORBIDDEN, f"{host}: blocked by the URL guard: {exc}"
        ) from exc
    except OSError as exc:
        raise WorkerError(ErrorCode.SOURCE_UNREACHABLE, f"{host}: {exc}") from exc
    if scheme == "https":
        return _PinnedHTTPSConnection(host, port, addresses, config.timeout, config.tls_context())
    return _PinnedHTTPConnection(host, port, addresses, config.timeout)


def split_target(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a URL; WorkerError(SourceUnreachable) when it has none."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WorkerError(
            ErrorCode.SOURCE_UNREACHABLE, f"invalid URL from the server: {exc}"
        ) from exc
    if not host:
        raise WorkerError(ErrorCode.SOURCE_UNREACHABLE, "invalid URL from the server: no host")
    if "\x00" in url or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise WorkerError(
            ErrorCode.SOURCE_UNREACHABLE, "invalid URL from the server: control characters"
        )
    return parts.scheme, host, port


def request_target(url: str) -> str:
    """Path and query of a URL, as sent on the request line."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A Location header may carry raw non-ASCII (or spaces); send it percent-encoded,
    # as browsers do, leaving what is already ASCII as it is.
    return quote(target, safe=_ASCII_PRINTABLE)


def network_error(exc: BaseException, url: str) -> WorkerError:
    """A connection-level failure as SourceUnreachable, naming the host only."""
    where = redact_url(url)
    if isinstance(exc, TimeoutError | socket.timeout):
        return WorkerError(ErrorCode.SOURCE_UNREACHABLE, f"{where}: timed out")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return WorkerError(
            ErrorCode.SOURCE_UNREACHABLE, f"{where}: TLS verification failed: {exc.verify_message}"
        )
    return WorkerError(ErrorCode.SOURCE_UNREACHABLE, f"{where}: {type(exc).__name__}: {exc}")


def status_error(status: int, url: str) -> WorkerError | None:
    """The error an HTTP status stands for, or None for success."""
    where = redact_url(url)
    if status in (401, 403):
        return WorkerError(ErrorCode.SOURCE_FORBIDDEN, f"{where}: HTTP {status}: access denied")
    if status in (404, 410):
        return WorkerError(ErrorCode.SOURCE_NOT_FOUND, f"{where}: HTTP {status}: not found")
    if status >= 400:
        return WorkerError(ErrorCode.SOURCE_UNREACHABLE, f"{where}: HTTP {status}")
    return None


def open_get(
    url: str, config: NetConfig, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
    """GET with guarded redirects; returns the open connection, its response and the final URL.

    Raises WorkerError for blocked hops, network failures and too many redirects; HTTP
    error statuses are returned for the caller to map.
    """
    send = {"User-Agent": USER_AGENT, "Accept": "*/*", **(headers or {})}
    for _hop in range(config.max_redirects + 1):
        conn = connect(url, config)
        try:
            conn.request("GET", request_target(url), headers=send)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise network_error(exc, url) from exc
        location = resp.getheader("Location")
        if resp.status not in REDIRECTS or not location:
            return conn, resp, url
        resp.close()
        conn.close()
        try:
            url = urljoin(url, location)
        except ValueError as exc:
            raise WorkerError(
                ErrorCode.SOURCE_UNREACHABLE, f"invalid redirect from {redact_url(url)}: {exc}"
            ) from exc
    raise WorkerError(
        ErrorCode.SOURCE_UNREACHABLE,
        f"more than {config.max_redirects} redirects (last: {redact_url(url)})",
    )
