"""Reading a Batch or an ExtractionJob from a file (or stdin), validated by the API models."""

import json
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from audioextract.api.base import DNS_SUBDOMAIN
from audioextract.api.constants import BATCH_KIND, JOB_KIND
from audioextract.api.resources import Batch, ExtractionJob
from audioextract.api.spec import BatchSpec, ExtractionJobSpec, Webhook
from audioextract.api.validation import parse_input

STDIN = "-"
DEFAULT_NAMESPACE = "default"


class InvalidInputError(Exception):
    """The file cannot be run; ``messages`` name the fields, one message per problem."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


@dataclass(frozen=True)
class Loaded:
    """A validated Batch or ExtractionJob with the metadata the runner needs."""

    kind: str
    name: str
    namespace: str
    uid: str
    batch: BatchSpec | None = None
    job: ExtractionJobSpec | None = None

    @property
    def webhook(self) -> Webhook | None:
        """The spec's webhook, if any."""
        spec = self.batch if self.batch is not None else self.job
        return spec.webhook if spec is not None else None


def field_path(parts: Sequence[Any]) -> str:
    """``['spec', 'jobs', 0, 'name']`` -> ``spec.jobs[0].name`` (kubectl's notation)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]" or str(part).startswith("function-"):
            # pydantic's markers for dict keys and validator wrappers are not fields.
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def validation_messages(exc: ValidationError) -> list[str]:
    """One ``field: message`` line per validation error."""
    out = []
    for err in exc.errors():
        where = field_path(err.get("loc", ())) or "(object)"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            # As the API server words it (strict field validation).
            message = f'unknown field "{err["loc"][-1]}"'
        out.append(f"{where}: {message}")
    return out


def read_text(path: str) -> str:
    """The file's text; ``-`` reads stdin."""
    if path == STDIN:
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError([f"{path}: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError([f"{path}: not UTF-8 text"]) from exc


def parse(text: str, where: str) -> dict[str, Any]:
    """One object from JSON or YAML text (YAML also reads JSON; JSON is tried first for its errors)."""
    stripped = text.lstrip()
    try:
        if where.endswith(".json") or stripped.startswith("{"):
            data = json.loads(text)
        else:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
            if len(docs) > 1:
                raise InvalidInputError(
                    [f"{where}: holds {len(docs)} YAML documents; put one object in a file"]
                )
            data = docs[0] if docs else None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInputError([f"{where}: not valid JSON or YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise InvalidInputError([f"{where}: expected a Batch or an ExtractionJob object"])
    return data


def _default_name(where: str, kind: str) -> str:
    stem = Path(where).stem.lower() if where != STDIN else ""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", stem).strip("-")[:63]
    return cleaned or kind.lower()


def from_object(obj: dict[str, Any], where: str = STDIN) -> Loaded:
    """Validate an object as the API server would (the pydantic models); raises InvalidInputError."""
    kind = obj.get("kind")
    if kind not in (BATCH_KIND, JOB_KIND):
        raise InvalidInputError([f"kind: expected {BATCH_KIND} or {JOB_KIND}, got {kind!r}"])
    try:
        model: Batch | ExtractionJob = (
            parse_input(Batch, obj) if kind == BATCH_KIND else parse_input(ExtractionJob, obj)
        )
    except ValidationError as exc:
        raise InvalidInputError(validation_messages(exc)) from exc
    meta = model.metadata or {}
    name = meta.get("name") or _default_name(where, str(kind))
    if not isinstance(name, str) or len(name) > 253 or not re.match(DNS_SUBDOMAIN, name):
        raise InvalidInputError([f"metadata.name: {name!r} is not a valid Kubernetes name"])
    namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
    # Webhook ids hash the owner's uid: one given in the file keeps them stable across runs.
    uid = str(meta.get("uid") or uuid.uuid4())
    if isinstance(model, Batch):
        return Loaded(BATCH_KIND, name, namespace, uid, batch=model.spec)
    return Loaded(JOB_KIND, name, namespace, uid, job=model.spec)


def load(path: str) -> Loaded:
    """Read, parse and validate FILE (``-`` for stdin)."""
    return from_object(parse(read_text(path), path), path)
