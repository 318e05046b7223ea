"""``vit-zoo weights``, ``download``, ``cache``: published weights and the cache."""
from __future__ import annotations


def _command_weights(args):
    from vit_zoo.weights import manifest

    print(manifest.weights_table(args.model))


def _command_download(args):
    from vit_zoo.weights import pretrained

    name, _, tag = args.model.partition(":")
    entry = pretrained.resolve_entry(name, tag or True)
    path = pretrained.converted_checkpoint(entry, progress=not args.quiet and None)
    print(f"{entry['key']}: converted weights at {path}")


def _command_cache(args):
    from vit_zoo.weights import cache

    if args.clear is not None:
        removed = cache.clear_cache(args.clear or None)
        print(f"removed {len(removed)} item(s), {sum(item.size for item in removed):,} bytes, "
              f"from {cache.cache_root()}")
        return
    print(cache.format_cache_table())


def add_commands(commands) -> None:
    sub = commands.add_parser("weights", help="published weights known to the manifest")
    sub.add_argument("model", nargs="?", default=None, help="only this variant's weights")
    sub.set_defaults(run=_command_weights)

    sub = commands.add_parser("download", help="download and convert published weights into the cache")
    sub.add_argument("model", help="MODEL or MODEL:TAG, e.g. vit-base-16 or vit-base-16:orig-in21k")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(run=_command_download)

    sub = commands.add_parser("cache", help="list (or clear) the cache under VIT_ZOO_HOME")
    sub.add_argument("--clear", nargs="?", const="", default=None, metavar="PATTERN",
                     help="remove everything, or the items whose path matches the glob PATTERN")
    sub.set_defaults(run=_command_cache)
