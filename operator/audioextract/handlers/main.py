"""``audio-extract operator``: kopf's watches, the controller and the leader Lease."""

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import uuid

import kopf
from pydantic import ValidationError

from audioextract import logs, metrics
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


class StartupError(Exception):
    """The operator cannot start as configured; the message names the setting."""


def _identity(settings: Settings) -> str:
    return settings.pod_name or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    """Run kopf's watches, the controller and (unless standalone) the Lease together."""
    load_config()
    kube = Kube(timeout=settings.api_timeout_seconds, max_writes=settings.max_concurrent_writes)
    namespaces: list[str] = list(args.namespace)
    elector: LeaderElector | None = None
    tasks: list[asyncio.Task[None]] = []
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
    kopf_ready = asyncio.Event()
    metrics.leader_from(lambda: elector is None or elector.leading)
    server = metrics.MetricsServer(
        settings.metrics_address,
        settings.metrics_port,
        # Live while the loop answers and no background task has died.
        live=lambda: {"event-loop": True, "tasks": not any(t.done() for t in tasks)},
        # Ready once kopf has started (its watches follow at once) and the leader state
        # is known; a standby instance is ready too (docs/metrics.md).
        ready=lambda: {
            "kopf": kopf_ready.is_set(),
            "lease": elector is None or elector.known,
        },
        refresh=controller.count_phases,
    )
    try:
        await server.start()
    except OSError as exc:
        where = f"{settings.metrics_address}:{settings.metrics_port}"
        raise StartupError(
            f"AUDIOEXTRACT_METRICS_PORT: cannot listen on {where}: {exc.strerror or exc}"
        ) from exc
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
            ready_flag=kopf_ready,
            memories=registry.ForgetfulMemories(),
        )
    finally:
        await server.stop()
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
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"audio-extract operator: {_setting_error(exc)}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, args.verbose)
    if not args.verbose:
        # The event handlers only wake the loop; kopf's per-event "succeeded" lines
        # would drown the operator's own log.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args, settings))
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    return 0


def _setting_error(exc: ValidationError) -> str:
    """The first error, naming the environment variable (a cross-field check names its own)."""
    err = exc.errors()[0]
    loc = "_".join(str(part) for part in err.get("loc", ()))
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"AUDIOEXTRACT_{loc.upper()}: {message}" if loc else message
