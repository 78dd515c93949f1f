"""The ``audio-extract`` command: one subcommand per module, imported only when used."""

import argparse
import importlib
import sys
from collections.abc import Sequence

from audioextract import __version__

# name -> (module with add_arguments/run, help). A new subcommand is one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "crds": ("audioextract.api.crd", "print, write or check the generated CRDs"),
    "operator": ("audioextract.handlers.main", "run the Kubernetes operator"),
    "run": (
        "audioextract.local.main",
        "run a Batch or ExtractionJob file locally, without Kubernetes",
    ),
    "worker": ("audioextract.worker.main", "run one extraction task (the worker image)"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command-line parser, with the options of the subcommand ``argv`` chooses."""
    parser = argparse.ArgumentParser(
        prog="audio-extract", description="Turn video into audio at scale."
    )
    parser.add_argument("--version", action="version", version=f"audio-extract {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen subcommand's module is imported: the worker starts fast and
    # never loads the operator's dependencies.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    rc: int = args._run(args)
    return rc
