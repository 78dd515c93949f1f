"""The URL guard against SSRF, shared by the worker and webhook delivery (DESIGN §4).

Refused always, whatever is configured: link-local and cloud-metadata addresses
(:data:`ALWAYS_BLOCKED`), also when embedded in an IPv6 address (IPv4-mapped, NAT64,
6to4). Refused unless listed in ``AUDIOEXTRACT_ALLOW_NETWORKS`` (comma-separated
CIDRs): loopback, unspecified, multicast and reserved addresses. Private ranges
(RFC 1918, carrier-grade NAT 100.64.0.0/10, IPv6 unique-local) depend on who
connects, each with its own setting (``allow`` or ``deny``):

- ``AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS`` (default ``allow``): every connection of
  the worker — sources, S3 endpoints, PUT destinations. Sources are often
  legitimately private (an in-cluster object store, an intranet CDN), and the
  worker Pod has no credentials of the cluster to lose.
- ``AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS`` (default ``deny``): webhook delivery from
  the operator, whose network position (next to the API server and every Service)
  and whose status write-back (``lastError`` shows the answer's status) make it a
  probe of the cluster network otherwise.

``AUDIOEXTRACT_DENY_PRIVATE_NETWORKS=true`` (older) denies private ranges for both.
``AUDIOEXTRACT_ALLOW_NETWORKS`` opens listed ranges for both (never the always-blocked).

A check of the URL alone is not enough: callers resolve the host once with
:func:`resolve`, connect to the address it returns (pinning it), and check every
redirect hop again.
"""

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_ENV = "AUDIOEXTRACT_ALLOW_NETWORKS"
DENY_PRIVATE_ENV = "AUDIOEXTRACT_DENY_PRIVATE_NETWORKS"
SOURCE_PRIVATE_ENV = "AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS"
WEBHOOK_PRIVATE_ENV = "AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS"


class Purpose(StrEnum):
    """Who connects: the worker (sources and destinations) or webhook delivery."""

    SOURCES = "sources"
    WEBHOOKS = "webhooks"


PRIVATE_SETTINGS: dict[Purpose, tuple[str, bool]] = {
    # purpose -> (variable, private ranges denied by default)
    Purpose.SOURCES: (SOURCE_PRIVATE_ENV, False),
    Purpose.WEBHOOKS: (WEBHOOK_PRIVATE_ENV, True),
}

# Never reachable, even when listed in AUDIOEXTRACT_ALLOW_NETWORKS.
ALWAYS_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. 169.254.169.254 metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS instance metadata over IPv6
    ipaddress.ip_network("fd00:ec2::23/128"),  # EKS Pod Identity agent
    ipaddress.ip_network("fd20:ce::254/128"),  # GCP metadata over IPv6
    ipaddress.ip_network("168.63.129.16/32"),  # Azure WireServer
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("192.0.0.192/32"),  # Oracle Cloud metadata (legacy address)
)
# Private for the guard: what ipaddress calls private, plus carrier-grade NAT space
# (used for Pod and Service ranges by some clusters and overlay networks).
EXTRA_PRIVATE: tuple[IPNetwork, ...] = (ipaddress.ip_network("100.64.0.0/10"),)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(Exception):
    """The destination resolves to an address the guard refuses."""


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address carried inside it (mapped, NAT64, 6to4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is a.b.c.d: the socket connects to that IPv4 address.
            return [ip.ipv4_mapped]
        if ip in NAT64:
            # A DNS64 answer: the NAT64 gateway connects to the embedded IPv4 address.
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
        if ip.sixtofour is not None:
            return [ip, ip.sixtofour]
    return [ip]


def _private_denied(purpose: Purpose, env: Mapping[str, str]) -> bool:
    if env.get(DENY_PRIVATE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return True
    name, default = PRIVATE_SETTINGS[purpose]
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("allow", "deny"):
        raise ValueError(f"{name}: {raw!r} is neither allow nor deny")
    return raw == "deny"


@dataclass(frozen=True)
class GuardPolicy:
    """Which addresses outbound connections may reach."""

    allow_networks: tuple[IPNetwork, ...] = ()
    deny_private: bool = False
    blocked: tuple[IPNetwork, ...] = field(default=ALWAYS_BLOCKED)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, purpose: Purpose = Purpose.SOURCES
    ) -> "GuardPolicy":
        """The policy the environment configures for ``purpose`` (see the module's docs)."""
        env = os.environ if environ is None else environ
        return cls(
            allow_networks=parse_networks(env.get(ALLOW_ENV, "")),
            deny_private=_private_denied(purpose, env),
        )

    def check(self, address: str | IPAddress) -> None:
        """Raise BlockedAddressError unless ``address`` may be reached."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        candidates = _embedded(ip)
        for candidate in candidates:
            if any(candidate in net for net in self.blocked if net.version == candidate.version):
                raise BlockedAddressError(
                    f"address {ip} is link-local or a cloud metadata address "
                    f"(never allowed, not even through {ALLOW_ENV})"
                )
        # An address carrying another is judged by the carried one too.
        for candidate in candidates:
            self._check_one(ip, candidate)

    def _check_one(self, shown: IPAddress, ip: IPAddress) -> None:
        if any(ip.version == net.version and ip in net for net in self.allow_networks):
            return
        if ip.is_loopback or ip.is_unspecified:
            raise BlockedAddressError(
                f"address {shown} is loopback or unspecified "
                f"(list its network in {ALLOW_ENV} to allow it)"
            )
        if ip.is_multicast or ip.is_reserved:
            raise BlockedAddressError(
                f"address {shown} is multicast or reserved "
                f"(list its network in {ALLOW_ENV} to allow it)"
            )
        private = ip.is_private or any(
            ip.version == net.version and ip in net for net in EXTRA_PRIVATE
        )
        if self.deny_private and private:
            raise BlockedAddressError(
                f"address {shown} is in a private range "
                f"(list its network in {ALLOW_ENV} to allow it)"
            )


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """CIDRs from a comma-separated list; raises ValueError naming a bad entry."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"{ALLOW_ENV}: {part!r} is not a CIDR") from exc
    return tuple(networks)


def resolve(host: str, port: int, policy: GuardPolicy) -> str:
    """Resolve ``host`` once and return one permitted address to connect to.

    Every address the name resolves to must pass: a name that mixes public and
    internal addresses is refused rather than raced.
    """
    return resolve_all(host, port, policy)[0]


def resolve_all(host: str, port: int, policy: GuardPolicy) -> list[str]:
    """Resolve ``host`` once; every address, all checked, in the resolver's order.

    Callers try them in order (an unreachable IPv6 address before a working IPv4
    one is common) and never resolve again.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    except (UnicodeError, ValueError) as exc:
        # Not a host name at all (IDNA refuses it, a label is too long, a NUL byte).
        raise OSError(f"cannot resolve {host!r}: not a valid host name") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        policy.check(address)
    return addresses


def check_url(
    url: str, policy: GuardPolicy, schemes: frozenset[str] = frozenset({"http", "https"})
) -> str:
    """Check a URL's scheme and host; returns the pinned address of its host."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise BlockedAddressError(f"scheme {parts.scheme!r} is not allowed")
    if not parts.hostname:
        raise BlockedAddressError("URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return resolve(parts.hostname, port, policy)


def redact_url(url: str) -> str:
    """The URL without user-info, query string and fragment: fit for logs, status and Events.

    Never raises: a URL that does not parse is shown as its scheme alone.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        scheme = url.partition(":")[0]
        return f"{scheme}://<invalid>" if scheme.isalnum() else "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    # A path starting with '//' would read back as a host.
    path = "/" + parts.path.lstrip("/") if parts.path.startswith("//") else parts.path
    return urlunsplit((parts.scheme, netloc, path, "", ""))
