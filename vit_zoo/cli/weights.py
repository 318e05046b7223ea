"""``vit-zoo weights``, ``download``, ``cache``: published weights and the cache."""
from __future__ import annotations

from vit_zoo.cli.tables import format_cache_table, format_weights_table, human_size


def _command_weights(args):
    import vit_zoo

    print(format_weights_table(vit_zoo.list_weights(args.model)))


def _command_download(args):
    import vit_zoo

    path = vit_zoo.download_weights(args.model, progress=False if args.quiet else None)
    print(f"{args.model}: converted weights at {path}")


def _command_cache(args):
    from vit_zoo import cache_root, clear_cache, list_cache

    if args.clear is not None:
        removed = clear_cache(args.clear or None)
        print(f"removed {len(removed)} item(s), {human_size(sum(item.size for item in removed))}, "
              f"from {cache_root()}")
        return
    print(format_cache_table(list_cache(), cache_root()))


def add_commands(commands) -> None:
    sub = commands.add_parser("weights", help="published weights known to the manifest")
    sub.add_argument("model", nargs="?", default=None, help="only this variant's weights (default: every variant's)")
    sub.set_defaults(run=_command_weights)

    sub = commands.add_parser("download", help="download and convert published weights into the cache")
    sub.add_argument("model", help="MODEL or MODEL:TAG, e.g. vit-base-16 or vit-base-16:orig-in21k")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(run=_command_download)

    sub = commands.add_parser("cache", help="list (or clear) the cache under VIT_ZOO_HOME")
    sub.add_argument("--clear", nargs="?", const="", default=None, metavar="PATTERN",
                     help="remove everything, or the items whose path matches the glob PATTERN (default: list, remove "
                          "nothing)")
    sub.set_defaults(run=_command_cache)
