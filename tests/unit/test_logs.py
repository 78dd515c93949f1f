"""JSON logs: one object per line, naming the object for our lines and for kopf's."""

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import kopf
import pytest

from audioextract import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("json", stream=out)
    yield out
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_line_names_the_object_and_keeps_tracebacks_on_one_line(
    captured: io.StringIO,
) -> None:
    log = logging.getLogger("audioextract.test")
    obj = {"metadata": {"namespace": "media", "name": "episode-42"}}
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("Batch %s: failed", "media/episode-42", extra=logs.about(obj, "Batch"))
    log.info("no object here")
    first, second = lines(captured)
    assert first["level"] == "error"
    assert first["logger"] == "audioextract.test"
    assert first["message"] == "Batch media/episode-42: failed"
    assert (first["kind"], first["namespace"], first["name"]) == ("Batch", "media", "episode-42")
    assert "ValueError: bad\nthing" in str(first["exception"])
    assert str(first["time"]).endswith("+00:00")
    assert second["message"] == "no object here"
    assert "namespace" not in second


def test_kopf_object_logger_lines_carry_the_same_fields(
    captured: io.StringIO,
) -> None:
    body = kopf.Body(
        {
            "apiVersion": "audioextract.dev/v1alpha1",
            "kind": "ExtractionJob",
            "metadata": {"namespace": "media", "name": "lecture-01", "uid": "u1"},
        }
    )
    logger = kopf.ObjectLogger(body=body, settings=kopf.OperatorSettings())
    logger.warning("Handler failed")
    (line,) = lines(captured)
    assert line["logger"] == "kopf.objects"
    assert (line["kind"], line["namespace"], line["name"]) == (
        "ExtractionJob",
        "media",
        "lecture-01",
    )


def test_python_warnings_and_every_other_line_are_json_in_a_real_process() -> None:
    code = (
        "import logging, warnings\n"
        "from audioextract import logs\n"
        "logs.configure('json')\n"
        "warnings.warn('an old API', DeprecationWarning, stacklevel=1)\n"
        "logging.getLogger('kopf.objects').info('multi\\nline')\n"
    )
    run = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    parsed = [json.loads(line) for line in run.stderr.splitlines()]
    assert [p["logger"] for p in parsed] == ["py.warnings", "kopf.objects"]
    assert "DeprecationWarning: an old API" in str(parsed[0]["message"])
    assert parsed[1]["message"] == "multi\nline"
