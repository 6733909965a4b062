"""Entry point of the `wsl-diff` command.

Every subcommand lives in its own module under `cli/` and exposes two functions:

    add_parser(subparsers) -> argparse.ArgumentParser   # declares its flags
    run(args) -> int                                     # does the work, returns the exit code

Errors a user can fix (bad flags, unreadable or inconsistent files) are raised by the library as
``ValueError`` / ``OSError`` and reach the user here as one line on stderr with exit code 2 —
never a traceback; the parameters the library names in backticks are shown as the flags that set
them (`cli.common.translate_error`). Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from cli.common import translate_error

# Subcommand name -> module under cli/. Modules are imported lazily so that `wsl-diff corrupt`
# does not pay for importing torch.
SUBCOMMANDS: dict[str, str] = {
    "corrupt": "cli.corrupt",
    "train": "cli.train",
    "classify": "cli.classify",
    "evaluate": "cli.evaluate",
    "benchmark": "cli.benchmark",
    "demo": "cli.demo",
    "sample": "cli.sample",
    "condense": "cli.condense",
    "refine": "cli.refine",
    "find-issues": "cli.find_issues",
}

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(available: dict[str, str] | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="wsl-diff",
        description="Diffusion models from imprecise labels (DMIS): train, classify, sample, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name, module_name in (available or SUBCOMMANDS).items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # subcommand not built yet: leave it out of the CLI
                continue
            raise
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(parser=sub_parser)  # to translate library errors into its flags
    return parser


def fail(message: str, *, prog: str = "wsl-diff") -> int:
    """Print a one-line user error and return the usage exit code."""
    first_line = " ".join(str(message).split())
    print(f"{prog}: error: {first_line}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the module of the requested subcommand when we can tell which one it is.
    wanted = {argv[0]: SUBCOMMANDS[argv[0]]} if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(wanted)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error (already printed as one line)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = argv[1:]  # the subcommand's own arguments, to tell given flags from defaults
    try:
        return int(args.run(args) or 0)
    except (ValueError, OSError) as exc:
        return fail(translate_error(str(exc), args.parser), prog=f"wsl-diff {args.command}")
    except KeyboardInterrupt:
        print("wsl-diff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
