"""Hostile tasks and servers: each gets its documented code, never WorkerCrashed or a traceback."""

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audioextract.api.constants import ErrorCode
from audioextract.urlguard import GuardPolicy, parse_networks
from audioextract.worker.errors import WorkerError
from audioextract.worker.net import NetConfig, open_get
from tests.support.http_server import MediaServer
from tests.worker.conftest import LOOPBACK, Run, RunWorker, media


def _invalid(run: Run, field: str) -> None:
    assert (run.returncode, run.error["code"], run.error["retryable"]) == (
        10,
        "InvalidSpec",
        False,
    ), run.stderr
    assert field in run.error["message"]
    assert "Traceback" not in run.stderr
    assert list(run.out_dir.rglob("*")) == []


def test_task_name_cannot_leave_the_destination(run_worker: RunWorker) -> None:
    run = run_worker(media("av.mp4"), name="sub/../../x")
    _invalid(run, "name")
    assert not (run.out_dir.parent / "x.mp3").exists()
    assert not (run.out_dir.parent.parent / "x.mp3").exists()


@pytest.mark.parametrize(
    ("source", "output", "field"),
    [
        (media("av\x00.mp4"), {}, "source.volume.path"),
        (media("d/" + "x" * 300 + ".mp4"), {}, "source.volume.path"),
        (media("av.mp4"), {"tags": {"title": "a\x00b"}}, "output.tags.title"),
        (
            media("av.mp4"),
            {"destination": {"volume": {"claimName": "out", "path": "a\x00/b"}}},
            "output.destination.volume.path",
        ),
        ({"url": "http://127.0.0.1:99999/x.mp4"}, {}, "source.url"),
        ({"url": "http://[::1/x.mp4"}, {}, "source.url"),
    ],
)
def test_refused_at_validation(
    run_worker: RunWorker, source: dict[str, Any], output: dict[str, Any], field: str
) -> None:
    _invalid(run_worker(source, output), field)


@pytest.mark.parametrize(
    "location",
    ["http://127.0.0.1:99999/x", "http://[::1/x", "http://[fe80::1%zz]:80/", "http://:80/"],
)
def test_bad_location_is_source_unreachable(
    run_worker: RunWorker, media_server: MediaServer, location: str
) -> None:
    run = run_worker({"url": media_server.url("redirect-to?url=" + quote(location, safe=""))})
    assert (run.returncode, run.error["code"]) == (20, "SourceUnreachable"), run.stderr
    assert "Traceback" not in run.stderr
    assert all(e["event"] != "crashed" for e in run.logs())


LOCATION_PARTS = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "ftp://", "file://", "//", "", "gopher://", "HTTP://"]),
    st.sampled_from(
        [
            "127.0.0.1",
            "[::1]",
            "[::1",
            "::1]",
            "169.254.169.254",
            "[fd00:ec2::254]",
            "0x7f.1",
            "2130706433",
            "",
            "a b",
            "[fe80::1%25eth0]",
            "u:p@127.0.0.1",
            "[::ffff:127.0.0.1]",
        ]
    ),
    st.sampled_from(["", ":0", ":1", ":65536", ":99999", ":-1", ":x", ":"]),
    st.text(
        alphabet=st.characters(max_codepoint=0xFF, blacklist_characters="\r\n"),
        max_size=15,
    ),
)


def test_fuzzed_locations_get_documented_codes(media_server: MediaServer) -> None:
    config = NetConfig(policy=GuardPolicy(allow_networks=parse_networks(LOOPBACK)), timeout=5)
    documented = {
        ErrorCode.SOURCE_UNREACHABLE,
        ErrorCode.SOURCE_FORBIDDEN,
        ErrorCode.SOURCE_NOT_FOUND,
    }

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(location=LOCATION_PARTS)
    def check(location: str) -> None:
        url = media_server.url("redirect-to?url=" + quote(location, safe=""))
        try:
            conn, resp, _final = open_get(url, config)
        except WorkerError as exc:
            assert exc.code in documented, exc
            return
        resp.close()
        conn.close()

    check()
