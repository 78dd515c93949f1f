"""kubectl against a real cluster, for the e2e tier: the commands a user would type."""

import json
import subprocess
from typing import Any

Obj = dict[str, Any]


class Kubectl:
    """Runs ``binary`` with ``kubeconfig`` (None: kubectl's own default and current context)."""

    def __init__(self, binary: str = "kubectl", kubeconfig: str | None = None) -> None:
        self.prefix = [binary, *(["--kubeconfig", kubeconfig] if kubeconfig else [])]

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """The finished kubectl; raises with its output when it fails, unless ``check=False``."""
        result = subprocess.run(
            [*self.prefix, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def apply(self, namespace: str | None, *objs: Obj) -> None:
        """Client-side apply of ``objs`` (into ``namespace`` when given)."""
        ns = ["-n", namespace] if namespace else []
        body = {"apiVersion": "v1", "kind": "List", "items": list(objs)}
        self("apply", *ns, "-f", "-", input=json.dumps(body))

    def get(self, namespace: str, kind: str, name: str) -> Obj:
        """One object as a dict (``kind`` as kubectl takes it: ``batch``, ``extractionjob``)."""
        obj: Obj = json.loads(self("get", "-n", namespace, kind, name, "-o", "json").stdout)
        return obj

    def names(self, namespace: str, kind: str, selector: str | None = None) -> list[str]:
        """``kind/name`` of each object of ``kind`` in ``namespace`` (optionally label-selected)."""
        args = ["get", "-n", namespace, kind, "-o", "name"]
        if selector:
            args += ["-l", selector]
        return self(*args).stdout.split()

    def exec(self, namespace: str, pod: str, *command: str) -> str:
        """Standard output of ``command`` run in ``pod``'s first container."""
        return self("exec", "-n", namespace, pod, "--", *command).stdout
