"""The `ctrip` command line. Each command lives in its own module, plugged in here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# (words of the command, module exposing configure(parser), one-line help). Each package keeps
# its commands in its own `command.py`; `predict` is the one module that is all command.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("cohort", "validate"), "ctrip.data.command", "validate a cohort folder"),
    (("cohort", "synth"), "ctrip.data.synth.command", "simulate a synthetic cohort"),
    (("cohort", "import"), "ctrip.io.command", "import UK Biobank or other data as a cohort"),
    (("cohort", "template"), "ctrip.io.template", "write an example study in an import layout"),
    (("predict",), "ctrip.predict", "predict the 18 CPs from localizer images"),
    (("run",), "ctrip.pipeline.command", "run the notebooks of a profile and build the book"),
    (("status",), "ctrip.pipeline.status", "list the runs of a results folder and their jobs"),
]


class _Unavailable:
    """Stands in for a command module that cannot be imported; running it reports why."""

    def __init__(self, command: str, error: ImportError) -> None:
        self.command, self.error = command, error

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.set_defaults(func=self.run, accepts_unknown_arguments=True)

    def run(self, args: argparse.Namespace) -> int:
        print(f"error: `ctrip {self.command}` is unavailable: {self.error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrip", description="C-TRIP companion")
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", required=True)
    }
    for words, module_name, help_text in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            # One broken command must not take the others down: it reports its own error.
            module = _Unavailable(" ".join(words), err)
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                group_parser = groups[words[: depth - 1]].add_parser(words[depth - 1])
                groups[prefix] = group_parser.add_subparsers(dest=f"command_{depth}", required=True)
        command_parser = groups[words[:-1]].add_parser(
            words[-1], help=help_text, description=help_text
        )
        module.configure(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ctrip.data.cohort import CohortError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "accepts_unknown_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except (CohortError, ValueError, OSError) as err:  # OSError: a file that cannot be read
        # or written (missing, permission, full disk) is the user's to fix: one line, no traceback
        if os.environ.get("CTRIP_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        print("(set CTRIP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
