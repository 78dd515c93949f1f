"""``audio-extract run FILE``: run a Batch or an ExtractionJob locally (docs/local.md).

Exit codes: 0 every job succeeded; 1 a job failed (or nothing could run); 2 invalid
input, the file or a flag (each problem is printed, naming its field or flag); 130
interrupted (Ctrl-C). ``run --help`` lists them with the environment variables.
"""

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from audioextract.api.constants import JobPhase
from audioextract.api.validation import batch_output_conflicts
from audioextract.local.load import InvalidInputError, load
from audioextract.local.plan import LOCAL_DESTINATION, Plan, build_plan, parse_volumes
from audioextract.reconcile.names import child_name
from audioextract.urlguard import (
    ALLOW_ENV,
    DENY_PRIVATE_ENV,
    SOURCE_PRIVATE_ENV,
    WEBHOOK_PRIVATE_ENV,
)
from audioextract.worker.settings import (
    CA_FILE_ENV,
    MAX_INPUT_BYTES_ENV,
    MAX_MEDIA_SECONDS_ENV,
    MAX_REDIRECTS_ENV,
    RW_TIMEOUT_ENV,
    TEMP_DIR_ENV,
)

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


EPILOG = f"""\
exit codes:
  {EXIT_SUCCEEDED}    every job succeeded
  {EXIT_FAILED}    a job failed, or nothing could run
  {EXIT_INVALID}    invalid input: the file (each field named) or a flag (the flag named)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C or SIGTERM); finished results are kept

environment:
  {SECRET_ENV}         webhook signing secret (whsec_...), instead of --webhook-secret
  {ALLOW_ENV}         comma-separated CIDRs that sources, destinations and webhooks
                                      may reach although loopback or private (default: none);
                                      link-local and cloud-metadata addresses never
  {SOURCE_PRIVATE_ENV}  allow|deny private ranges for sources and destinations
                                        (default: allow)
  {WEBHOOK_PRIVATE_ENV} allow|deny private ranges for webhooks (default: deny)
  {DENY_PRIVATE_ENV}  true: deny private ranges for both (older switch)
  {MAX_INPUT_BYTES_ENV}        most bytes read from one source
  {MAX_MEDIA_SECONDS_ENV}      longest source, in seconds
  {RW_TIMEOUT_ENV}     a source that sends nothing this long fails
  {MAX_REDIRECTS_ENV}          redirects followed per request
  {CA_FILE_ENV}                extra CA bundle for https sources and destinations
  {TEMP_DIR_ENV}               scratch directory (default /tmp)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL
                                      S3 sources and destinations
"""


class FlagError(Exception):
    """A command-line flag is unusable; the message starts with the flag."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number, at least 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run command's flags, and its help's exit codes and environment."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
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
        "--webhook-secret",
        metavar="VALUE",
        help=f"the webhook signing secret (whsec_...; default ${SECRET_ENV})",
    )
    parser.add_argument(
        "--drain-seconds",
        metavar="S",
        type=_seconds,
        default=DEFAULT_DRAIN_SECONDS,
        help=f"at the end, keep retrying webhook deliveries this long (default {DEFAULT_DRAIN_SECONDS:g})",
    )


def check_flags(args: argparse.Namespace) -> list[str]:
    """Problems with --out, --status and --volume, each message naming its flag."""
    problems = []
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        problems.append(f"--out {args.out}: exists and is not a directory")
    elif not out.exists():
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            problems.append(f"--out {args.out}: cannot be created (no writable parent directory)")
    elif not os.access(out, os.W_OK | os.X_OK):
        problems.append(f"--out {args.out}: is not writable")
    if args.status:
        status = Path(args.status).expanduser()
        parent = status.parent
        if status.is_dir():
            problems.append(f"--status {args.status}: is a directory; name a file")
        elif not parent.is_dir():
            problems.append(f"--status {args.status}: directory {parent} does not exist")
        elif not os.access(parent, os.W_OK | os.X_OK) or (
            status.exists() and not os.access(status, os.W_OK)
        ):
            problems.append(f"--status {args.status}: is not writable")
    try:
        parse_volumes(args.volume)
    except InvalidInputError as exc:
        problems += exc.messages
    return problems


def _prepare(args: argparse.Namespace) -> tuple[Plan, str | None]:
    """Load, validate and plan; raises InvalidInputError with every problem found."""
    loaded = load(args.file)
    if loaded.batch is not None:
        # One output, one job: the same rule the operator applies (docs/api.md).
        conflicts = batch_output_conflicts(loaded.name, loaded.batch, LOCAL_DESTINATION, child_name)
        if conflicts:
            raise InvalidInputError(conflicts)
    plan = build_plan(loaded, parse_volumes(args.volume), Path(args.out), args.parallel)
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
    flag_problems = check_flags(args)
    if flag_problems:
        for message in flag_problems:
            print(f"error: {message}", file=sys.stderr)
        return EXIT_INVALID
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
