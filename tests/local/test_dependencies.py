"""The dependency rule: the local runner reuses worker, reconcile and webhooks, never kopf or Kubernetes."""

import subprocess
import sys


def test_run_imports_no_kopf_and_no_kubernetes_client() -> None:
    code = (
        "import sys, audioextract.local.main, audioextract.local.runner;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes')"
        " or m.startswith('audioextract.handlers'));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
