"""`onggi image …` (and the pull/images/rmi aliases): argv → store operations → exit code."""

from __future__ import annotations

import sys

from runtime.errors import OnggiError

# argparse (with re, enum, gettext) and json cost more than unpacking a cached image in
# overlay mode; that command line is parsed by fast_parse, and both load only when needed.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

DEFAULT_STORE = "/var/lib/onggi"
ALIASES = {"pull": ["image", "pull"], "images": ["image", "ls"], "rmi": ["image", "rm"]}
SUBS = {"list": "ls", "remove": "rm", "umount": "unmount"}


def _parser_class() -> type:
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # one line, no usage dump
            raise OnggiError(f"{self.prog}: {message}", code=2)

    return _Parser


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    import argparse

    raise argparse.ArgumentTypeError(f"{text!r}: expected true or false")


def _transport_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--platform", help="os/arch[/variant] to pick from an index (default: the host's)")
    p.add_argument("--tls-verify", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="verify TLS certificates (default: true, except for loopback registries); "
                   "false also allows plain HTTP")
    p.add_argument("--plain-http", action="store_true", default=None, help="talk plain HTTP to the registry")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    _Parser = _parser_class()  # noqa: N806 - a class
    p = _Parser(prog="onggi image", description="Pull images, list them, and unpack them into bundles.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sp = sub.add_parser("pull", help="pull REF: registry ref, oci:DIR[:TAG] or docker-archive:FILE")
    sp.add_argument("ref")
    _transport_opts(sp)
    sp = sub.add_parser("ls", help="list images (alias: onggi images)", aliases=["list"])
    sp.add_argument("--format", choices=["table", "json"], default="table")
    sp.add_argument("-q", "--quiet", action="store_true", help="names only")
    sp = sub.add_parser("rm", help="remove images (alias: onggi rmi)", aliases=["remove"])
    sp.add_argument("refs", nargs="+", metavar="REF")
    sp.add_argument("-f", "--force", action="store_true", help="remove even if an overlay bundle uses it")
    sp = sub.add_parser("tag", help="tag SRC DST")
    sp.add_argument("src")
    sp.add_argument("dst")
    sp = sub.add_parser("inspect", help="manifest, config and layers as JSON")
    sp.add_argument("ref")
    sp = sub.add_parser("unpack", help="unpack REF BUNDLE: config.json + rootfs")
    sp.add_argument("ref")
    sp.add_argument("bundle")
    sp.add_argument("--mode", choices=["copy", "overlay"], default="copy")
    _transport_opts(sp)
    sp = sub.add_parser("unmount", aliases=["umount"],
                        help="undo an overlay-mode bundle: unmount it, remove its upper dir and volumes")
    sp.add_argument("bundle")
    return p


def main(args: list[str], store: str | None = None) -> int:
    """Entry point called by runtime/cli.py with the words after the global options."""
    args = list(args)
    if args and args[0] in ALIASES:
        args = ALIASES[args[0]] + args[1:]
    if args and args[0] == "image":
        args = args[1:]
    ns = fast_parse(args)
    if ns is None:
        try:
            ns = build_parser().parse_args(args)
        except SystemExit as e:  # --help
            return int(e.code or 0)
    if not ns.cmd:
        build_parser().print_help()
        return 2
    from runtime.image.store import Store

    st = Store(store or DEFAULT_STORE)
    try:
        return _run(SUBS.get(ns.cmd, ns.cmd), ns, st)
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        raise OnggiError(f"image {ns.cmd}:{where}: {e.strerror or e}") from e


class Args:
    """What build_parser().parse_args gives for `unpack`, built by fast_parse."""

    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


_UNPACK_FLAGS = {"-q": "quiet", "--quiet": "quiet", "--plain-http": "plain_http"}
_UNPACK_VALUES = {"--mode": "mode", "--platform": "platform"}


def fast_parse(args: list[str]) -> Args | None:
    """The namespace build_parser() would give for a plain `unpack REF BUNDLE [-q]
    [--mode M] [--platform P] [--plain-http]` (the words after `image`), without argparse;
    None for anything else (other commands, abbreviations, --tls-verify, odd values, errors),
    which then goes to argparse."""
    if not args or args[0] != "unpack":
        return None
    a = Args(cmd="unpack", mode="copy", platform=None, tls_verify=None, plain_http=None, quiet=False)
    positionals: list[str] = []
    rest = args[1:]
    while rest:
        tok = rest.pop(0)
        if tok in _UNPACK_FLAGS:
            setattr(a, _UNPACK_FLAGS[tok], True)
            continue
        name, eq, value = tok.partition("=")
        if name in _UNPACK_VALUES:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
                if value.startswith("-"):
                    return None
            setattr(a, _UNPACK_VALUES[name], value)
        elif not tok or tok.startswith("-"):
            return None
        else:
            positionals.append(tok)
    if len(positionals) != 2 or a.mode not in ("copy", "overlay"):
        return None
    a.ref, a.bundle = positionals
    return a


def _run(cmd: str, ns: argparse.Namespace, st: Any) -> int:
    if cmd == "pull":
        from runtime.image.pull import pull

        with st.init().lock("gc", shared=True):
            _, rec = pull(st, ns.ref, ns.platform, ns.tls_verify, ns.plain_http, ns.quiet)
        print(rec["digest"])
        return 0
    if cmd == "ls":
        from runtime.image.images import list_images

        rows = list_images(st)
        if ns.format == "json":
            import json

            print(json.dumps(rows, indent=2))
        elif ns.quiet:
            for r in rows:
                print(r["name"])
        else:
            _table(rows)
        return 0
    if cmd == "rm":
        from runtime.image.images import remove

        for n in remove(st, ns.refs, ns.force):
            print(f"Untagged: {n}")
        return 0
    if cmd == "tag":
        from runtime.image.images import tag

        tag(st, ns.src, ns.dst)
        return 0
    if cmd == "inspect":
        import json

        from runtime.image.images import inspect

        print(json.dumps(inspect(st, ns.ref), indent=2))
        return 0
    if cmd == "unpack":
        from runtime.image.bundle import unpack
        from runtime.image.images import find_image

        hit = None if ns.ref.startswith(("oci:", "docker-archive:")) else find_image(st, ns.ref)
        if hit is None:
            from runtime.image.pull import pull

            with st.init().lock("gc", shared=True):
                hit = pull(st, ns.ref, ns.platform, ns.tls_verify, ns.plain_http, ns.quiet)
        unpack(st, hit[0], hit[1], ns.bundle, ns.mode, ns.quiet)
        return 0
    if cmd == "unmount":
        from runtime.image.bundle import unmount

        unmount(st, ns.bundle)
        return 0
    raise OnggiError(f"image: unknown command {cmd!r}", code=2)


def _human(n: int) -> str:
    f = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if f < 1000 or unit == "GB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1000
    return str(n)


def _table(rows: list[dict[str, Any]]) -> None:
    head = ("REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED")
    data = [(r["repository"], r["tag"], r["digest"][7:19], _human(r["size"]), r["created"][:19]) for r in rows]
    widths = [max(len(x[i]) for x in [head, *data]) for i in range(5)]
    for row in [head, *data]:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
