"""Standard Webhooks signatures.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. The
signing secret is ``whsec_`` followed by the base64 key. A Secret value holding several
secrets separated by whitespace signs with each, and the signatures are sent
space-separated: during a key rotation a receiver that holds either key verifies.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
CONTENT_TYPE = "application/json"


class InvalidSecretError(ValueError):
    """The signing secret is empty or not ``whsec_`` followed by base64."""


def parse_secrets(value: str | bytes) -> list[bytes]:
    """The HMAC keys in a Secret value: one or more ``whsec_<base64>``, whitespace-separated.

    A value without the ``whsec_`` prefix is accepted as bare base64, as Standard
    Webhooks libraries do. Raises InvalidSecretError naming the bad entry's position.
    """
    text = value.decode() if isinstance(value, bytes) else value
    keys: list[bytes] = []
    for position, token in enumerate(text.split(), start=1):
        encoded = token.removeprefix(SECRET_PREFIX)
        try:
            # Unpadded keys are common: pad before the strict decode.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSecretError(f"signing secret #{position} is not whsec_ + base64") from exc
        if not key:
            raise InvalidSecretError(f"signing secret #{position} is empty")
        keys.append(key)
    if not keys:
        raise InvalidSecretError("the webhook Secret holds no signing secret")
    return keys


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one signature per key, space-separated."""
    if not keys:
        raise InvalidSecretError("no signing key")
    return " ".join(signature(key, msg_id, timestamp, body) for key in keys)


def signed_headers(
    keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers (and content type) for one delivery attempt."""
    return {
        "content-type": CONTENT_TYPE,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, msg_id, timestamp, body),
    }


def generate_secret(size: int = 32) -> str:
    """A new random signing secret in ``whsec_`` form, for tests and documentation examples."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(size)).decode()
