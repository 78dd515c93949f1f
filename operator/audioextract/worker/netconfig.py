"""Outbound HTTP settings, apart from :mod:`audioextract.worker.net`.

Every task needs them (the destination check reads the guard policy), but only URL
and S3 sources and destinations need ``http.client`` and ``ssl``: kept here, a task
between volumes never imports those (their import is a tenth of the worker's start-up).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from audioextract.urlguard import GuardPolicy

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True)
class NetConfig:
    """Guard policy, timeouts and TLS trust for outbound HTTP."""

    policy: GuardPolicy
    timeout: float = 30.0
    max_redirects: int = 5
    ca_file: str | None = None

    def tls_context(self) -> "ssl.SSLContext":
        """A verifying TLS context (system store, or the configured CA file)."""
        import ssl

        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
