"""``audio-extract run FILE``: run a Batch or an ExtractionJob locally (docs/local.md).

Exit codes: 0 every job succeeded; 1 a job failed (or nothing could run); 2 invalid
input (the validation errors are printed per field); 130 interrupted (Ctrl-C).
"""

import argparse
import asyncio
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from audioextract.api.constants import JobPhase
from audioextract.local.load import InvalidInputError, load
from audioextract.local.plan import Plan, build_plan, parse_volumes

if TYPE_CHECKING:
    from audioextract.local.runner import Outcome, Runner

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "out"
DEFAULT_DRAIN_SECONDS = 30.0
SECRET_ENV = "AUDIOEXTRACT_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret


def secret_from(flag: str | None) -> str | None:
    """The signing secret: ``--webhook-secret``, else $AUDIOEXTRACT_WEBHOOK_SECRET."""
    return flag or os.environ.get(SECRET_ENV) or None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run command's flags."""
    parser.add_argument(
        "file", metavar="FILE", help="a Batch or ExtractionJob (YAML or JSON; - for stdin)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"where jobs without a destination write their files (default ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--volume",
        metavar="NAME=DIR",
        action="append",
        default=[],
        help="a volume claim NAME is the local directory DIR (sources and destinations; repeatable)",
    )
    parser.add_argument(
        "--parallel",
        metavar="N",
        type=_positive,
        help="most jobs at once (default: the batch's parallelism, else the CPU count; "
        "with both, the smaller)",
    )
    parser.add_argument(
        "--status", metavar="FILE", help="write the status here (YAML; JSON for a .json name)"
    )
    parser.add_argument(
        "--metrics-file",
        metavar="FILE",
        help="write Prometheus metrics here on every change, for node exporter's textfile "
        "collector (name it *.prom)",
    )
    parser.add_argument(
        "--webhook-secret",
        metavar="VALUE",
        help=f"the webhook signing secret (whsec_...; default ${SECRET_ENV})",
    )
    parser.add_argument(
        "--drain-seconds",
        metavar="S",
        type=float,
        default=DEFAULT_DRAIN_SECONDS,
        help=f"at the end, keep retrying webhook deliveries this long (default {DEFAULT_DRAIN_SECONDS:g})",
    )


def _prepare(args: argparse.Namespace) -> tuple[Plan, str | None]:
    """Load, validate and plan; raises InvalidInputError with every problem found."""
    loaded = load(args.file)
    plan = build_plan(loaded, parse_volumes(args.volume), Path(args.out), args.parallel)
    if args.metrics_file:
        where = Path(args.metrics_file).parent
        if not where.is_dir() or not os.access(where, os.W_OK):
            raise InvalidInputError([f"--metrics-file: {where} is not a writable directory"])
        if importlib.util.find_spec("prometheus_client") is None:
            raise InvalidInputError(
                ["--metrics-file: needs the prometheus-client package, which is not installed"]
            )
    secret = None
    if loaded.webhook is not None:
        secret = secret_from(args.webhook_secret)
        if secret is None:
            raise InvalidInputError(
                [
                    "spec.webhook: a signing secret is needed to run locally: pass "
                    f"--webhook-secret or set {SECRET_ENV}"
                ]
            )
        # The webhooks package loads aiohttp: only when there is a webhook.
        from audioextract.webhooks.signing import InvalidSecretError, parse_secrets

        try:
            parse_secrets(secret)
        except InvalidSecretError as exc:
            raise InvalidInputError([f"--webhook-secret: {exc}"]) from exc
    return plan, secret


def exit_code(outcome: "Outcome") -> int:
    """0 when every job succeeded, 130 when interrupted, else 1."""
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if all(s.phase == JobPhase.SUCCEEDED for s in outcome.states):
        return EXIT_SUCCEEDED
    return EXIT_FAILED


async def _main(runner: "Runner") -> "Outcome":
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, runner.interrupt)
    loop.add_signal_handler(signal.SIGTERM, runner.interrupt)
    try:
        return await runner.run()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    """Run the file's jobs; returns the exit code."""
    try:
        plan, secret = _prepare(args)
    except InvalidInputError as exc:
        where = "stdin" if args.file == "-" else args.file
        print(f"error: {where} is not valid:", file=sys.stderr)
        for message in exc.messages:
            print(f"  {message}", file=sys.stderr)
        return EXIT_INVALID
    # Imported once the input is known to be good: a bad file is reported fast.
    from audioextract.local.display import Display, results_table, summary
    from audioextract.local.runner import Runner

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    status_path = Path(args.status) if args.status else None
    workdir = Path(tempfile.mkdtemp(prefix="audioextract-run-"))
    live = sys.stderr.isatty()
    try:
        runner = Runner(
            plan,
            workdir=workdir,
            status_path=status_path,
            webhook_secret=secret,
            drain_seconds=args.drain_seconds,
            metrics_path=Path(args.metrics_file) if args.metrics_file else None,
        )
        display = Display(plan, runner.states, live=live)
        runner.view = display
        for note in plan.notes:
            display.message(note)
        display.message(
            f"running {len(plan.jobs)} job(s) of {plan.loaded.kind} {plan.loaded.name}, "
            f"at most {plan.parallelism} at once"
        )
        if plan.loaded.batch is not None and plan.loaded.batch.suspend:
            display.message("spec.suspend is true: no job is started")
        outcome = asyncio.run(_main(runner))
        display.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(results_table(plan, outcome.states))
    print()
    for line in summary(plan, outcome.status, status_path, outcome.webhook, outcome.interrupted):
        print(line)
    sys.stdout.flush()
    return exit_code(outcome)
