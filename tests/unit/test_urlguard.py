"""The URL guard refuses internal addresses, and what it resolves is what callers pin."""

import pytest

from audioextract.urlguard import BlockedAddressError, GuardPolicy, check_url, parse_networks


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
    ("address", "policy", "says"),
    [
        ("127.0.0.1", GuardPolicy(), "list its network in AUDIOEXTRACT_ALLOW_NETWORKS"),
        (
            "10.1.2.3",
            GuardPolicy(deny_private=True),
            "list its network in AUDIOEXTRACT_ALLOW_NETWORKS",
        ),
        ("169.254.169.254", GuardPolicy(), "not even through AUDIOEXTRACT_ALLOW_NETWORKS"),
    ],
)
def test_refusal_names_the_setting(address: str, policy: GuardPolicy, says: str) -> None:
    with pytest.raises(BlockedAddressError, match=says):
        policy.check(address)
