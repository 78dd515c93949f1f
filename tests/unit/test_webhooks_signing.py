"""Standard Webhooks signatures: the spec's test vector, rotation, and the reference library."""

import base64
import json
import time

import pytest
import standardwebhooks

from audioextract.webhooks.signing import (
    InvalidSecretError,
    generate_secret,
    parse_secrets,
    sign,
    signature,
    signed_headers,
)

# The example from the Standard Webhooks specification and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_vector() -> None:
    keys = parse_secrets(SPEC_SECRET)
    assert sign(keys, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_reference_library_verifies_our_headers() -> None:
    secret = generate_secret()
    body = json.dumps({"type": "job.completed", "data": {"x": "ü"}}, ensure_ascii=False).encode()
    headers = signed_headers(parse_secrets(secret), "msg_abc", int(time.time()), body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == json.loads(body)


def test_rotation_signs_with_every_key_and_each_verifies_alone() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"type":"batch.completed"}'
    headers = signed_headers(parse_secrets(f"{old} {new}"), "msg_1", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    standardwebhooks.Webhook(old).verify(body, headers)
    standardwebhooks.Webhook(new).verify(body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(body, headers)


def test_tampered_body_fails_reference_verification() -> None:
    secret = generate_secret()
    headers = signed_headers(parse_secrets(secret), "msg_1", int(time.time()), b'{"a":1}')
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(b'{"a":2}', headers)


def test_secret_forms() -> None:
    raw = b"0123456789abcdef0123456789abcdef"
    encoded = base64.b64encode(raw).decode()
    assert parse_secrets(f"whsec_{encoded}") == [raw]
    assert parse_secrets(encoded) == [raw]  # bare base64, as the reference libraries accept
    assert parse_secrets(f"whsec_{encoded.rstrip('=')}") == [raw]  # unpadded
    assert parse_secrets(f"  whsec_{encoded}\n whsec_{encoded}  ") == [raw, raw]
    assert signature(raw, "m", 1, b"x").startswith("v1,")


@pytest.mark.parametrize("value", ["", "   ", "whsec_", "whsec_not*base64", "whsec_a b!"])
def test_bad_secrets_are_refused(value: str) -> None:
    with pytest.raises(InvalidSecretError):
        parse_secrets(value)
