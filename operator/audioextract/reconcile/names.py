"""Deterministic, valid Kubernetes names and label values.

Names derived from user input (a Batch name may be a 253-character DNS subdomain)
are cut to a 63-character DNS label with a short hash of the full input, so they stay
unique, valid and the same on every reconcile.
"""

import hashlib
import re

from audioextract.api.constants import GROUP

MAX_LABEL = 63
HASH_LEN = 10
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Labels and annotations the operator sets besides the API's own (api/constants.py).
LABEL_EXTRACTION_JOB = f"{GROUP}/extractionjob"
APP_NAME = "audio-extract"
MANAGED_BY = "audio-extract-operator"
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_APP_INSTANCE = "app.kubernetes.io/instance"
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
LABEL_APP_PART_OF = "app.kubernetes.io/part-of"
LABEL_APP_MANAGED_BY = "app.kubernetes.io/managed-by"


def short_hash(text: str, length: int = HASH_LEN) -> str:
    """A short, stable hex digest of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is a valid RFC 1123 DNS label (at most 63 characters)."""
    return len(name) <= MAX_LABEL and _DNS_LABEL.match(name) is not None


def dns_label(raw: str) -> str:
    """``raw`` itself when it is a DNS label, else a cut-down form plus a hash of ``raw``.

    Dots (allowed in a DNS subdomain, not in a label) become dashes; any change adds
    the hash so that two inputs never map to the same name by the rewriting alone.
    """
    if is_dns_label(raw):
        return raw
    cleaned = re.sub(r"[^a-z0-9-]", "-", raw.lower())
    base = cleaned[: MAX_LABEL - HASH_LEN - 1].strip("-") or "x"
    return f"{base}-{short_hash(raw)}"


def child_name(batch_name: str, key: str) -> str:
    """The ExtractionJob name for the job ``key`` of a Batch: ``<batch>-<key>``, cut when long."""
    return dns_label(f"{batch_name}-{key}")


def batch_label_value(batch_name: str) -> str:
    """The value of the batch label: the Batch's name, cut with a hash above 63 characters."""
    return dns_label(batch_name)


def job_name(extraction_job: str, run: int) -> str:
    """The batch/v1 Job name for one run of an ExtractionJob: ``<ej>-<run>``, cut when long.

    A new run (after a retry-failed request) gets a new name, so it never collides with
    the previous run's Job that may still be being deleted; the same run always maps to
    the same name, so a create repeated after a restart finds the Job instead of
    duplicating it.
    """
    return dns_label(f"{extraction_job}-{run}")
