"""The URL guard against SSRF, shared by the worker and webhook delivery (DESIGN §4).

Refused by default: loopback, unspecified, multicast and reserved addresses, and —
always, whatever is configured — link-local and cloud-metadata addresses. Private
ranges are allowed unless ``AUDIOEXTRACT_DENY_PRIVATE_NETWORKS`` is true.
``AUDIOEXTRACT_ALLOW_NETWORKS`` (comma-separated CIDRs) allows ranges that would
otherwise be refused, such as 127.0.0.0/8 for tests or a private mirror.

A check of the URL alone is not enough: callers resolve the host once with
:func:`resolve`, connect to the address it returns (pinning it), and check every
redirect hop again.
"""

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_ENV = "AUDIOEXTRACT_ALLOW_NETWORKS"
DENY_PRIVATE_ENV = "AUDIOEXTRACT_DENY_PRIVATE_NETWORKS"

# Never reachable, even when listed in AUDIOEXTRACT_ALLOW_NETWORKS.
ALWAYS_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. 169.254.169.254 metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)


class BlockedAddressError(Exception):
    """The destination resolves to an address the guard refuses."""


@dataclass(frozen=True)
class GuardPolicy:
    """Which addresses outbound connections may reach."""

    allow_networks: tuple[IPNetwork, ...] = ()
    deny_private: bool = False
    blocked: tuple[IPNetwork, ...] = field(default=ALWAYS_BLOCKED)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "GuardPolicy":
        """The policy configured by AUDIOEXTRACT_ALLOW_NETWORKS and AUDIOEXTRACT_DENY_PRIVATE_NETWORKS."""
        env = os.environ if environ is None else environ
        return cls(
            allow_networks=parse_networks(env.get(ALLOW_ENV, "")),
            deny_private=env.get(DENY_PRIVATE_ENV, "").strip().lower() in {"1", "true", "yes"},
        )

    def check(self, address: str | IPAddress) -> None:
        """Raise BlockedAddressError unless ``address`` may be reached."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.blocked):
            raise BlockedAddressError(
                f"address {ip} is link-local or a cloud metadata address "
                f"(never allowed, not even through {ALLOW_ENV})"
            )
        if any(ip.version == net.version and ip in net for net in self.allow_networks):
            return
        if ip.is_loopback or ip.is_unspecified:
            raise BlockedAddressError(
                f"address {ip} is loopback or unspecified "
                f"(list its network in {ALLOW_ENV} to allow it)"
            )
        if ip.is_multicast or ip.is_reserved:
            raise BlockedAddressError(
                f"address {ip} is multicast or reserved (list its network in {ALLOW_ENV} to allow it)"
            )
        if self.deny_private and ip.is_private:
            raise BlockedAddressError(
                f"address {ip} is in a private range (list its network in {ALLOW_ENV} to allow it)"
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
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        policy.check(address)
    return addresses[0]


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
