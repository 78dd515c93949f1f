"""Log output of the operator: text lines, or one JSON object per line.

A line about one object carries it as ``extra=about(obj)``: the record attribute
``k8s_ref`` is the one kopf's own per-object loggers set, so kopf's lines and ours name
objects the same way. The JSON formatter turns it into ``kind``, ``namespace`` and
``name`` fields; the text format leaves the message as it is.
"""

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REF_ATTRIBUTE = "k8s_ref"  # kopf.ObjectLogger's record attribute for the object


def about(obj: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """``extra=`` for a log call about a Kubernetes object (its kind, namespace and name).

    ``kind`` names it when the object lacks ``kind`` (items of some list responses).
    """
    meta = obj.get("metadata") or {}
    return ref(obj.get("kind") or kind, meta.get("namespace"), meta.get("name"))


def ref(kind: str | None, namespace: str | None, name: str | None) -> dict[str, Any]:
    """``extra=`` for a log call about the object ``kind`` ``namespace/name``."""
    return {REF_ATTRIBUTE: {"kind": kind, "namespace": namespace, "name": name}}


class JsonFormatter(logging.Formatter):
    """One JSON object per record on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line: time, level, logger, message, object, exception."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, REF_ATTRIBUTE, None)
        if isinstance(ref, Mapping):
            for field in ("kind", "namespace", "name"):
                if ref.get(field):
                    out[field] = ref[field]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(log_format: str, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Python's warnings go through logging too, so JSON mode has no plain-text lines.
    logging.captureWarnings(True)
