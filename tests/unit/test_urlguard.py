"""The URL guard refuses internal addresses, and what it resolves is what callers pin."""

import pytest

from audioextract.urlguard import (
    BlockedAddressError,
    GuardPolicy,
    Purpose,
    check_url,
    parse_networks,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        "::",
        "169.254.169.254",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "100.100.100.200",
    ],
)
def test_refused_by_default(address: str) -> None:
    with pytest.raises(BlockedAddressError):
        GuardPolicy.from_env({}).check(address)


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "192.168.1.1", "172.16.0.1", "93.184.216.34", "2606:4700::1"]
)
def test_public_and_private_allowed_by_default(address: str) -> None:
    GuardPolicy.from_env({}).check(address)


def test_private_refused_when_configured() -> None:
    with pytest.raises(BlockedAddressError, match="private"):
        GuardPolicy.from_env({"AUDIOEXTRACT_DENY_PRIVATE_NETWORKS": "true"}).check("10.1.2.3")


def test_allow_list_opens_loopback_but_never_metadata() -> None:
    policy = GuardPolicy.from_env({"AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8, 169.254.0.0/16"})
    policy.check("127.0.0.1")
    with pytest.raises(BlockedAddressError):
        policy.check("169.254.169.254")


def test_bad_allow_list_names_the_entry() -> None:
    with pytest.raises(ValueError, match="'nonsense'"):
        parse_networks("10.0.0.0/8,nonsense")


def test_check_url_resolves_and_pins() -> None:
    policy = GuardPolicy.from_env({"AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8"})
    assert check_url("http://127.0.0.1:8080/x", policy) == "127.0.0.1"
    with pytest.raises(BlockedAddressError):
        check_url("http://127.0.0.1:8080/x", GuardPolicy.from_env({}))
    with pytest.raises(BlockedAddressError, match="scheme"):
        check_url("file:///etc/passwd", policy)
    with pytest.raises(BlockedAddressError, match="scheme"):
        check_url("gopher://example.com/", policy)


@pytest.mark.parametrize(
    "address",
    [
        "fd20:ce::254",  # GCP metadata over IPv6
        "fd00:ec2::23",  # EKS Pod Identity
        "168.63.129.16",  # Azure WireServer
        "192.0.0.192",  # Oracle Cloud (legacy)
        "::ffff:168.63.129.16",
        "64:ff9b::a9fe:a9fe",  # 169.254.169.254 through NAT64
        "2002:a9fe:a9fe::1",  # ... and through 6to4
    ],
)
def test_metadata_addresses_refused_whatever_is_allowed(address: str) -> None:
    for purpose in Purpose:
        policy = GuardPolicy.from_env(
            {
                "AUDIOEXTRACT_ALLOW_NETWORKS": "0.0.0.0/0,::/0",
                "AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS": "allow",
                "AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS": "allow",
            },
            purpose,
        )
        with pytest.raises(BlockedAddressError, match="metadata"):
            policy.check(address)


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.1", "100.64.0.10", "fd12:3456::1"])
def test_private_ranges_default_per_purpose(address: str) -> None:
    GuardPolicy.from_env({}, Purpose.SOURCES).check(address)
    with pytest.raises(BlockedAddressError, match="private"):
        GuardPolicy.from_env({}, Purpose.WEBHOOKS).check(address)
    GuardPolicy.from_env(
        {"AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS": "allow"}, Purpose.WEBHOOKS
    ).check(address)
    with pytest.raises(BlockedAddressError):
        GuardPolicy.from_env({"AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS": "deny"}).check(address)
    # The older switch denies both; the allow list still opens a listed range.
    with pytest.raises(BlockedAddressError):
        GuardPolicy.from_env({"AUDIOEXTRACT_DENY_PRIVATE_NETWORKS": "true"}).check(address)
    GuardPolicy.from_env(
        {"AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS": "deny", "AUDIOEXTRACT_ALLOW_NETWORKS": address},
        Purpose.WEBHOOKS,
    ).check(address)


def test_nat64_answer_is_judged_by_its_ipv4_address() -> None:
    GuardPolicy.from_env({}).check("64:ff9b::5db8:d822")  # 93.184.216.34
    with pytest.raises(BlockedAddressError, match="loopback"):
        GuardPolicy.from_env({}).check("64:ff9b::7f00:1")


def test_bad_private_setting_is_named() -> None:
    with pytest.raises(ValueError, match="AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS"):
        GuardPolicy.from_env({"AUDIOEXTRACT_WEBHOOK_PRIVATE_NETWORKS": "maybe"}, Purpose.WEBHOOKS)


@pytest.mark.parametrize(
    ("address", "env", "says"),
    [
        ("127.0.0.1", {}, "list its network in AUDIOEXTRACT_ALLOW_NETWORKS"),
        (
            "10.1.2.3",
            {"AUDIOEXTRACT_DENY_PRIVATE_NETWORKS": "true"},
            "list its network in AUDIOEXTRACT_ALLOW_NETWORKS",
        ),
        ("169.254.169.254", {}, "not even through AUDIOEXTRACT_ALLOW_NETWORKS"),
    ],
)
def test_refusal_names_the_setting(address: str, env: dict[str, str], says: str) -> None:
    with pytest.raises(BlockedAddressError, match=says):
        GuardPolicy.from_env(env).check(address)
