"""The presigned ``downloadUrl`` of ``job.completed`` webhooks for S3 results (DESIGN §5).

Called by the Dispatcher before each ``job.completed`` attempt; the link is sent and
never stored, so it is made anew (with a fresh validity) for every attempt. The
destination is resolved as the worker's was (the job's own, else the operator's
default), and signed with the same credentials the worker got: the destination's
Secret, else the operator's configured one, else the operator's own ``AWS_*``
environment; with none there is no link.
"""

import asyncio
import base64
from collections.abc import Callable
from typing import Any

from audioextract.api.spec import ExtractionJobSpec
from audioextract.api.task import build_task
from audioextract.handlers.kube import Kube
from audioextract.reconcile.manifest import OPTIONAL_S3_KEYS, S3_KEYS
from audioextract.settings import Settings
from audioextract.webhooks import Event
from audioextract.worker.storage import Side, credentials_for, download_url

Lookup = Callable[[str, str], dict[str, Any] | None]


class DownloadLinks:
    """``await links(event)``: the download URL for a ``job.completed`` event, or None."""

    def __init__(self, kube: Kube, settings: Settings, lookup: Lookup) -> None:
        """``lookup(namespace, name)`` finds an observed ExtractionJob (no extra API read).

        Secrets are read through ``kube``; the validity comes from ``settings``.
        """
        self.kube, self.settings, self.lookup = kube, settings, lookup

    async def __call__(self, event: Event) -> str | None:
        """A presigned GET for the event's result when it is in S3; None otherwise."""
        data = event.payload.get("data") or {}
        uri = ((data.get("result") or {}).get("uri")) or ""
        name = (data.get("job") or {}).get("extractionJob")
        namespace = data.get("namespace")
        if not uri.startswith("s3://") or not name or not namespace:
            return None
        ej = self.lookup(namespace, name)
        if ej is None:
            return None  # gone since the event was derived: no link rather than a stale one
        spec = ExtractionJobSpec.model_validate(ej.get("spec") or {})
        dest = build_task(name, spec, self.settings.default_destination).output.destination
        s3 = dest.s3 if dest is not None else None
        secret = (
            s3.credentials_secret.name
            if s3 is not None and s3.credentials_secret is not None
            else self.settings.s3_credentials_secret
        )
        credentials = await self._credentials(namespace, secret) if secret else None
        return await asyncio.to_thread(
            download_url,
            uri,
            (s3.endpoint if s3 else None) or self.settings.s3_endpoint,
            (s3.region if s3 else None) or self.settings.s3_region,
            self.settings.download_url_seconds,
            credentials,
        )

    async def _credentials(self, namespace: str, name: str) -> dict[str, str]:
        secret: dict[str, Any] = await self.kube.read_secret(namespace, name)
        data = secret.get("data") or {}
        keys: dict[str, str] = {}
        for key in S3_KEYS:
            if key in data:
                keys[key] = base64.b64decode(data[key]).decode()
            elif key not in OPTIONAL_S3_KEYS:
                raise ValueError(f"Secret {name} has no key {key}")
        # The Secret's keys read as the worker reads its environment.
        creds = credentials_for(Side.DESTINATION, keys)
        if creds is None:
            raise ValueError(f"Secret {name} has empty AWS keys")
        return creds
