"""The ``vit-zoo`` command line: each command parses its arguments and calls one library function.
TensorFlow's start-up notes are kept out of the output (``--debug`` shows them).

Exit codes: 0 success, 1 a failure (one readable line on stderr; ``--debug``, anywhere on the command
line, shows the traceback), 2 a usage error, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import os
import sys

from vit_zoo.cli import mapping, models, train, use, weights

COMMAND_GROUPS = (models, use, train, weights, mapping)


_DEBUG_HELP = "show tracebacks on errors, and TensorFlow's start-up notes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vit-zoo", description="Vision Transformers for Keras 3.")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    # --debug after the command too; SUPPRESS keeps a command's parser from resetting one given before it
    for sub in {id(sub): sub for sub in commands.choices.values()}.values():
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


# Commands that only read the variants table, the manifest or the cache: they never import Keras.
_KERAS_FREE_COMMANDS = ("list", "info", "weights", "cache")


def _import_keras_quietly() -> None:
    """Import Keras (and its backend) with file descriptor 2 closed: TensorFlow's CUDA stubs print
    start-up notes straight to it on machines without a GPU."""
    if "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from vit_zoo.native_output import native_stderr_silenced

    with native_stderr_silenced():
        import keras  # noqa: F401  (registers vit_zoo's Keras classes too)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.model_given = any(a == "--model" or a.startswith("--model=") for a in argv)
    try:
        if not args.debug and args.command not in _KERAS_FREE_COMMANDS:
            _import_keras_quietly()
        args.run(args)
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print(f"vit-zoo {args.command}: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    except Exception as error:  # one readable line unless --debug
        if args.debug:
            raise
        message = str(error).strip() or type(error).__name__
        print(f"vit-zoo {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


