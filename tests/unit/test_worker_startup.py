"""What the worker imports before it runs a task between volumes.

The worker is one process per job: every module it imports is paid for by every job
(docs/performance.md, "fixed cost"). HTTP client, TLS and the guard proxy's HTTP
server are needed only for URL and S3 sources and destinations, so a run between
volumes must not import them. Checked in a fresh interpreter, as a Job runs it.
"""

import subprocess
import sys

# Needed only by URL or S3 sources and destinations (worker/net.py, worker/proxy.py).
NETWORK_ONLY = ("http.client", "http.server", "ssl")


def _loaded_after(statement: str) -> set[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_the_worker_imports_no_http_or_tls_before_a_task_needs_them() -> None:
    loaded = _loaded_after(
        "import audioextract.cli, audioextract.worker.main, audioextract.worker.job"
    )
    assert "audioextract.worker.job" in loaded
    assert loaded.isdisjoint(NETWORK_ONLY), sorted(loaded & set(NETWORK_ONLY))


def test_the_network_modules_still_provide_what_url_sources_use() -> None:
    # The names moved out of worker.net stay importable from it (tests, other callers).
    loaded = _loaded_after(
        "from audioextract.worker.net import NetConfig, open_get, status_error\n"
        "from audioextract.worker.netconfig import NetConfig as Moved\n"
        "from audioextract.worker.proxy import GuardProxy\n"
        "assert NetConfig is Moved"
    )
    assert set(NETWORK_ONLY) <= loaded
