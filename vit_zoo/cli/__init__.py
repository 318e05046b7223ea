"""The ``vit-zoo`` command line: each command parses its arguments and calls one library function.
TensorFlow's start-up notes are kept out of the output (``--debug`` shows them).

Exit codes: 0 success, 1 a failure (one readable line on stderr; ``--debug``, anywhere on the command
line, shows the traceback), 2 a usage error (with the command's own usage), 130 interrupted (Ctrl-C,
answered within seconds: ``vit_zoo.cli.interrupt``). Warnings print as ``vit-zoo COMMAND: warning: ...``,
without the source line that raised them; messages name flags, not the library's argument names.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import warnings

from vit_zoo.cli import mapping, models, train, use, weights
from vit_zoo.cli.wording import UsageError, as_flags

COMMAND_GROUPS = (models, use, train, weights, mapping)


_DEBUG_HELP = "show tracebacks on errors, and TensorFlow's start-up notes"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except where there is none to show (a switch, or a
    default the help text itself explains, such as one picked from the data)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vit-zoo", description="Vision Transformers for Keras 3.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    for sub in {id(sub): sub for sub in commands.choices.values()}.values():
        sub.formatter_class = HelpFormatter
        sub.set_defaults(parser=sub)
        # --debug after the command too; SUPPRESS keeps a command's parser from resetting one given before it
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> dict:
    """{command name: its parser}."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# Commands that only read the variants table, the manifest or the cache: they never import Keras.
_KERAS_FREE_COMMANDS = ("list", "info", "weights", "cache")


def _import_keras_quietly() -> None:
    """Import Keras (and its backend) with file descriptor 2 closed: TensorFlow's CUDA stubs print
    start-up notes straight to it on machines without a GPU; on the other backends TensorFlow too, where
    it is installed (Keras imports it later otherwise, past any silencing)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return
    from vit_zoo.native_output import native_stderr_silenced  # allow-listed in tests/test_import_direction.py

    with native_stderr_silenced():
        import keras  # (registers vit_zoo's Keras classes too)

        if keras.backend.backend() != "tensorflow":
            # Keras on JAX / PyTorch imports TensorFlow when it first checks for tf.data inputs, and
            # TensorFlow's absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL: import it here, silenced
            try:
                import tensorflow  # noqa: F401
            except ImportError:  # not installed: nothing to silence
                pass


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings as ``vit-zoo COMMAND: warning: MESSAGE`` (no file name, no code line); library
    FutureWarnings and DeprecationWarnings raised inside our calls are not the user's business."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"vit-zoo {command}: warning: {as_flags(str(message), command)}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def main(argv=None) -> int:
    """Run ``vit-zoo ARGV`` (default ``sys.argv[1:]``) and return its exit code. As the console script
    (``argv`` None) Ctrl-C ends the process within seconds wherever it is (``vit_zoo.cli.interrupt``)."""
    entry_point = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own usage, not the top-level one
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.model_given = any(a == "--model" or a.startswith("--model=") for a in argv)
    announced = threading.Event()
    from vit_zoo.cli.interrupt import answered_promptly

    guard = answered_promptly(args.command, announced) if entry_point else contextlib.nullcontext()
    try:
        with guard, _one_line_warnings(args.command):
            if getattr(args, "check", None) is not None:  # the command's inputs, before Keras or any download
                args.check(args)
            if not args.debug and args.command not in _KERAS_FREE_COMMANDS:
                _import_keras_quietly()
            args.run(args)
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        announced.set()
        print(f"vit-zoo {args.command}: interrupted", file=sys.stderr, flush=True)
        if entry_point:  # do not wait for worker threads at exit: every write is atomic
            sys.stdout.flush()
            os._exit(130)
        return 130  # 128 + SIGINT, as shells report it
    except UsageError as error:
        args.parser.error(as_flags(str(error), args.command))
    except Exception as error:  # one readable line unless --debug
        if args.debug:
            raise
        message = as_flags(str(error).strip() or type(error).__name__, args.command)
        print(f"vit-zoo {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0

