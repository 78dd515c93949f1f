"""Signed webhooks from the operator to a real HTTP receiver, with a retried failure."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes.client
import pytest
import standardwebhooks

from audioextract.webhooks.signing import generate_secret
from tests.envtest.operator_helpers import DEST, GROUP, VERSION, batch_manifest, get, make_video
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for


class Receiver:
    """Records every POST; answers 500 to the first one so that a retry is needed."""

    def __init__(self, secret: str) -> None:
        self.key = secret
        self.verifier = standardwebhooks.Webhook(secret)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[str] = []
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.calls += 1
                if receiver.calls == 1:
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    payload = receiver.verifier.verify(body, dict(self.headers))
                except Exception as exc:
                    receiver.rejected.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.received.append((self.headers["webhook-id"], payload))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(generate_secret()) as r:
        yield r


def test_batch_webhooks_are_signed_delivered_and_recorded(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    kubelet: FakeKubelet,
    api_client: kubernetes.client.ApiClient,
    receiver: Receiver,
) -> None:
    media = kubelet.volume_dir("media")
    make_video(media / "a.mp4")
    make_video(media / "b.mp4")
    kubelet.volume_dir("out")
    core = kubernetes.client.CoreV1Api(api_client)
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    env = {
        "AUDIOEXTRACT_DEFAULT_DESTINATION": DEST,
        "AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8",
        "AUDIOEXTRACT_WEBHOOK_RETRY_SCHEDULE": "1s,1s,1s",
    }
    with OperatorProcess(controller_manager, namespace, env) as op:
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "hook"}, "stringData": {"secret": receiver.key}}
        )
        jobs = [
            {"name": n, "source": {"volume": {"claimName": "media", "path": f"{n}.mp4"}}}
            for n in ("a", "b")
        ]
        manifest = batch_manifest(
            "hooked", jobs, webhook={"url": receiver.url, "secretRef": {"name": "hook"}}
        )
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "batches", manifest)

        def delivered() -> dict[str, Any] | None:
            b = get(custom, namespace, "batches", "hooked")
            wh = (b.get("status") or {}).get("webhook") or {}
            ok = (b.get("status") or {}).get("phase") == "Succeeded" and wh.get("delivered") == 3
            return b if ok and wh.get("pending") == 0 else None

        batch = wait_for(delivered, timeout=120, interval=0.5, what="3 webhooks delivered")
        assert op.alive(), op.log()[-5000:]
    assert not receiver.rejected, receiver.rejected
    types = sorted(p["type"] for _, p in receiver.received)
    assert types == ["batch.completed", "job.completed", "job.completed"]
    ids = {i for i, _ in receiver.received}
    assert len(ids) == 3  # one stable id per event; the failed first attempt was retried
    assert receiver.calls == 4
    final = next(p for _, p in receiver.received if p["type"] == "batch.completed")
    assert final["data"]["phase"] == "Succeeded" and final["data"]["summary"]["succeeded"] == 2
    assert batch["status"]["webhook"]["failed"] == 0
    assert len(batch["status"]["webhook"]["settled"]) == 3
