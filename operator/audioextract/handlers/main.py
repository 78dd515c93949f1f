"""``audio-extract operator``: kopf's watches, the controller and the leader Lease."""

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import uuid

import kopf

from audioextract.handlers import registry
from audioextract.handlers.controller import Controller
from audioextract.handlers.kube import Kube, load_config
from audioextract.handlers.lease import LeaderElector
from audioextract.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The operator's command-line options (everything else is in the environment)."""
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespace to watch (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="act without holding the leader Lease (one instance only: development, tests)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def _identity(settings: Settings) -> str:
    return settings.pod_name or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    """Run kopf's watches, the controller and (unless standalone) the Lease together."""
    load_config()
    kube = Kube(timeout=settings.api_timeout_seconds, max_writes=settings.max_concurrent_writes)
    namespaces: list[str] = list(args.namespace)
    elector: LeaderElector | None = None
    tasks: list[asyncio.Task[None]] = []
    controller: Controller
    identity = _identity(settings)
    if not args.standalone:
        lease_ns = (
            settings.lease_namespace
            or os.environ.get("POD_NAMESPACE")
            or (namespaces[0] if namespaces else "default")
        )
        elector = LeaderElector(
            kube,
            lease_ns,
            settings.lease_name,
            identity,
            settings.lease_duration_seconds,
        )
    controller = Controller(kube, settings, namespaces or None, elector)
    registry.TARGET.controller = controller
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run(controller.leadership)))
    tasks.append(asyncio.create_task(controller.run()))
    try:
        # kopf's own peering stays off: the Lease above is the leader election. The
        # identity is passed because kopf otherwise derives one from getpass.getuser(),
        # which fails for a uid without a passwd entry (the images' 65532, any runAsUser).
        await kopf.operator(
            registry=registry.REGISTRY,
            # kopf's Identity is a NewType of str that kopf does not export.
            identity=identity,  # type: ignore[arg-type]
            standalone=True,
            namespaces=namespaces,
            clusterwide=not namespaces,
        )
    finally:
        await controller.notifier.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if elector is not None:
            await elector.release()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``audio-extract operator``; returns the exit code."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # The event handlers only wake the loop; kopf's per-event "succeeded" lines
        # would drown the operator's own log.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        settings = Settings()
    except ValueError as exc:  # pydantic's ValidationError included: name the setting
        logging.getLogger(__name__).error("invalid settings: %s", exc)
        return 2
    asyncio.run(serve(args, settings))
    return 0
