"""argv -> verb; every failure -> one line on stderr (and --log), and a non-zero exit.

Global options come before the verb, as with runc. Each verb builds only its own parser
and imports only what it needs: state/kill/delete/start are called for every container
event by podman and containerd, so their start-up cost is paid again and again.
"""

from __future__ import annotations

import gc
import os
import sys

from runtime import log
from runtime.errors import OnggiError

IMAGE_VERBS = ("image", "pull", "images", "rmi")


def _parser(prog: str, **kw: object):
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # one line, not argparse's usage dump
            verb = self.prog.removeprefix("onggi").strip()  # _fail adds "onggi: " itself
            raise OnggiError(f"{verb}: {message}" if verb else message, code=2)

        def format_help(self) -> str:  # runc's layout (runtime.help)
            from runtime import help

            verb = self.prog.removeprefix("onggi").strip()
            return help.verb_help(self, VERBS.get(verb, ("", ""))[1])

    return _Parser(prog=prog, **kw)


SUPPRESS = "==SUPPRESS=="  # argparse.SUPPRESS, without importing argparse here


def _global_parser():
    import argparse

    p = _parser("onggi", add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--root", default="/run/onggi", help="state directory (default /run/onggi)")
    p.add_argument("--log", help="log file (engines read the last error line)")
    p.add_argument("--log-format", default="text")  # checked by log.setup, as runc does
    p.add_argument("--debug", action="store_true", help="debug logs, tracebacks on errors")
    p.add_argument("--systemd-cgroup", action="store_true", help="cgroups through systemd")
    p.add_argument("--rootless", nargs="?", const="true", default="auto",
                   help="ignore cgroup permission errors (true|false|auto)")
    p.add_argument("--criu", help=SUPPRESS)
    p.add_argument("--store", default="/var/lib/onggi", help="image store (default /var/lib/onggi)")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    p.add_argument("command", nargs="?", help="create, start, state, kill, delete, run, exec, "
                   "list, ps, pause, resume, update, events, spec, features, validate, image")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _verb_parser(name: str):
    return _parser(f"onggi {name}")


def _create_flags(p, run: bool = False) -> None:
    """create's flags (and run's), in runc's order: `--help` lists them as runc does."""
    p.add_argument("-b", "--bundle", default=".", help="path to the root of the bundle "
                   "directory, defaults to the current directory")
    p.add_argument("--console-socket", help="path to an AF_UNIX socket which will receive a "
                   "file descriptor referencing the master end of the console's pseudoterminal")
    if run:
        p.add_argument("-d", "--detach", action="store_true",
                       help="detach from the container's process")
        p.add_argument("--keep", action="store_true",
                       help="do not delete the container after it exits")
    p.add_argument("--pid-file", help="specify the file to write the process id to")
    if run:
        p.add_argument("--no-subreaper", action="store_true", help=SUPPRESS)
    p.add_argument("--no-pivot", action="store_true", help="do not use pivot root to jail "
                   "process inside rootfs.  This should be used whenever the rootfs is on top "
                   "of a ramdisk")
    p.add_argument("--no-new-keyring", action="store_true", help="do not create a new session "
                   "keyring for the container.  This will cause the container to inherit the "
                   "calling processes session key")
    p.add_argument("--preserve-fds", type=int, default=0, help="Pass N additional file "
                   "descriptors to the container (stdio + $LISTEN_FDS + N in total)")
    p.add_argument("id")


def _create_options(a: Args, g: Args):
    from runtime import cgroups
    from runtime.launch import CreateOptions

    if a.preserve_fds < 0:
        raise OnggiError("--preserve-fds: must not be negative")
    return CreateOptions(cid=a.id, root=g.root, pid_file=a.pid_file,
                         console_socket=a.console_socket, no_pivot=a.no_pivot,
                         no_new_keyring=a.no_new_keyring, preserve_fds=a.preserve_fds,
                         cgroups=cgroups.Options(systemd=g.systemd_cgroup, rootless=g.rootless))


def _load(bundle: str, cid: str):
    from runtime import spec, state

    state.check_id(cid)
    return spec.load_bundle(bundle)


def create_parser():
    p = _verb_parser("create")
    _create_flags(p)
    return p


def cmd_create(argv: list[str], g: Args) -> int:
    return _create(create_parser().parse_args(argv), g)


def _create(a: Args, g: Args) -> int:
    from runtime import launch

    launch.create(*_load(a.bundle, a.id), _create_options(a, g))
    return 0


def run_parser():
    p = _verb_parser("run")
    _create_flags(p, run=True)
    return p


def cmd_run(argv: list[str], g: Args) -> int:
    return _run(run_parser().parse_args(argv), g)


def _run(a: Args, g: Args) -> int:
    from runtime import foreground

    cfg, data = _load(a.bundle, a.id)
    return foreground.run(cfg, data, _create_options(a, g), detach=a.detach, keep=a.keep)


def cmd_start(argv: list[str], g: Args) -> int:
    from runtime import container

    p = _verb_parser("start")
    p.add_argument("id")
    container.start(g.root, p.parse_args(argv).id)
    return 0


def cmd_state(argv: list[str], g: Args) -> int:
    from runtime import container

    p = _verb_parser("state")
    p.add_argument("id")
    sys.stdout.write(container.state_text(g.root, p.parse_args(argv).id))
    return 0


def cmd_kill(argv: list[str], g: Args) -> int:
    from runtime import container

    p = _verb_parser("kill")
    p.add_argument("-a", "--all", action="store_true", help="send the specified signal to all processes inside the container")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="TERM")
    a = p.parse_args(argv)
    container.kill(g.root, a.id, container.parse_signal(a.signal), a.all)
    return 0


def cmd_delete(argv: list[str], g: Args) -> int:
    from runtime import container

    p = _verb_parser("delete")
    p.add_argument("-f", "--force", action="store_true", help="Forcibly deletes the container if it is still running (uses SIGKILL)")
    p.add_argument("id")
    a = p.parse_args(argv)
    container.delete(g.root, a.id, a.force)
    return 0


def cmd_list(argv: list[str], g: Args) -> int:
    from runtime import container

    p = _verb_parser("list")
    p.add_argument("-f", "--format", choices=("table", "json"), default="table",
                   help="select one of: table or json")
    p.add_argument("-q", "--quiet", action="store_true", help="display only container IDs")
    a = p.parse_args(argv)
    states = container.list_states(g.root, warn=lambda line: sys.stderr.write(f"onggi: {line}\n"))
    for s in states:  # runc fills the owner in for `list` (not for `state`)
        s["owner"] = container.owner(g.root, s["id"])
    if a.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif a.format == "json":
        # byte for byte runc's: compact, Go's escaping, map keys sorted, null when empty
        from runtime import fastjson

        for s in states:
            if "annotations" in s:
                s["annotations"] = dict(sorted(s["annotations"].items()))
        sys.stdout.write(fastjson.dumps_go(states or None) + "\n")
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]] + [
            [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
            for s in states
        ]
        sys.stdout.write(container.format_table(rows))
    return 0


def cmd_spec(argv: list[str], g: Args) -> int:
    import json

    from runtime.spec_default import default_spec

    p = _verb_parser("spec")
    p.add_argument("-b", "--bundle", default=".", help="path to the root of the bundle directory")
    p.add_argument("--rootless", action="store_true", help="generate a configuration for a rootless container")
    a = p.parse_args(argv)
    path = os.path.join(a.bundle, "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise OnggiError(f"{path}: file exists (remove it first)") from None
    except OSError as e:
        raise OnggiError(f"{path}: {e.strerror.lower()}") from None
    with os.fdopen(fd, "w") as f:
        json.dump(default_spec(a.rootless), f, indent="\t")
    return 0


def cmd_validate(argv: list[str], g: Args) -> int:
    from runtime import schema, spec

    p = _verb_parser("validate")
    p.add_argument("-b", "--bundle", default=".", help="path to the root of the bundle directory")
    p.add_argument("--strict", action="store_true",
                   help="also report what the spec's JSON schema refuses (as warnings)")
    a = p.parse_args(argv)
    path = os.path.join(os.path.abspath(a.bundle), "config.json")
    warnings = []
    if a.strict:  # the schema's own view, where create accepts what runc accepts
        with open(path, "rb") as f:
            warnings = schema.check_with_jsonschema(spec.parse_json(f.read(), path))
    spec.load_bundle(a.bundle)  # create's verdict decides the exit status
    for w in warnings:
        sys.stderr.write(f"onggi: warning: config: {w}\n")
    print(f"{path}: valid")
    return 0


def cmd_features(argv: list[str], g: Args) -> int:
    import json

    from runtime import features

    _verb_parser("features").parse_args(argv)
    print(json.dumps(features.features(), indent=4))
    return 0


# verb -> ("module:function", one-line summary). Each function takes (argv, global Args)
# and returns the exit status; its module is imported only when the verb runs, so a verb
# that lives in its own module (exec, the cgroup verbs) costs the others nothing.
VERBS: dict[str, tuple[str, str]] = {
    "create": ("runtime.cli:cmd_create", "create a container"),
    "delete": ("runtime.cli:cmd_delete", "delete any resources held by the container often used with detached container"),
    "events": ("runtime.cgroups.events:cmd_events",
               "display container events such as OOM notifications, cpu, memory, and IO usage statistics"),
    "exec": ("runtime.exec:main", "execute new process inside the container"),
    "features": ("runtime.cli:cmd_features", "show the enabled features"),
    "kill": ("runtime.cli:cmd_kill", "kill sends the specified signal (default: SIGTERM) to the container's init process"),
    "list": ("runtime.cli:cmd_list", "lists containers started by onggi with the given root"),
    "pause": ("runtime.cgroups.verbs:cmd_pause", "pause suspends all processes inside the container"),
    "ps": ("runtime.cgroups.verbs:cmd_ps", "ps displays the processes running inside a container"),
    "resume": ("runtime.cgroups.verbs:cmd_resume",
               "resumes all processes that have been previously paused"),
    "run": ("runtime.cli:cmd_run", "create and run a container"),
    "spec": ("runtime.cli:cmd_spec", "create a new specification file"),
    "start": ("runtime.cli:cmd_start", "executes the user defined process in a created container"),
    "state": ("runtime.cli:cmd_state", "output the state of a container"),
    "update": ("runtime.cgroups.update:cmd_update", "update container resource constraints"),
    "validate": ("runtime.cli:cmd_validate", "check a bundle's config.json"),
}


# Verbs that parse their own flags without argparse (engines call `exec` for every exec):
# after the global options, the rest of the command line goes to them as it is.
SELF_PARSING = ("exec",)


def _self_parsing(argv: list[str]) -> tuple[Args, list[str]] | None:
    gi = _fast_globals(argv)
    if gi is None or gi[1] == len(argv) or argv[gi[1]] not in SELF_PARSING:
        return None
    g, i = gi
    if g.systemd_cgroup or g.log_format not in ("text", "json"):
        return None  # argparse's errors
    g.command = argv[i]
    return g, argv[i + 1 :]


def _verb(name: str):
    target = VERBS.get(name)
    if target is None:
        raise OnggiError(f"No help topic for {name!r}", code=3)  # runc's words and status
    mod, _, fn = target[0].partition(":")
    return getattr(__import__(mod, fromlist=[fn]), fn)


def _help(topic: str | None, g: Args) -> int:
    """`onggi help [VERB]`: the app's help, or the verb's own (its parser renders it)."""
    if topic is None:
        from runtime import help

        sys.stdout.write(help.app_help(VERBS))
        return 0
    if topic in IMAGE_VERBS:
        from runtime.image.cli import main as image_main

        return image_main([topic, "--help"], store=g.store)
    return _verb(topic)(["--help"], g)


# The verbs engines call for every container event, and their flags: parsed without argparse,
# whose import (with re and enum) costs ~30 ms here, several times a bare interpreter.
_CREATE_FLAGS = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_CREATE_VALUES = {"-b": "bundle", "--bundle": "bundle", "--pid-file": "pid_file",
                  "--console-socket": "console_socket", "--preserve-fds": "preserve_fds"}
_HOT_FLAGS = {"state": {}, "start": {}, "kill": {"-a": "all", "--all": "all"},
              "delete": {"-f": "force", "--force": "force"}, "create": _CREATE_FLAGS,
              "run": {**_CREATE_FLAGS, "-d": "detach", "--detach": "detach", "--keep": "keep",
                      "--no-subreaper": "no_subreaper"}}
_HOT_VALUES = {"create": _CREATE_VALUES, "run": _CREATE_VALUES}
_HOT_POSITIONALS = {"state": ("id",), "start": ("id",), "kill": ("id", "signal"),
                    "delete": ("id",), "create": ("id",), "run": ("id",)}
_HOT_DEFAULTS = {"create": {"bundle": ".", "pid_file": None, "console_socket": None,
                            "preserve_fds": 0}}
_HOT_DEFAULTS["run"] = _HOT_DEFAULTS["create"]
_GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format",
                  "--criu": "criu", "--store": "store"}
_GLOBAL_FLAGS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}


class Args:
    """Parsed options: argparse's Namespace, or this stand-in with _global_parser's defaults."""

    def __init__(self, **kw: object) -> None:
        self.root, self.log, self.log_format, self.debug = "/run/onggi", None, "text", False
        self.systemd_cgroup, self.rootless, self.criu = False, "auto", None
        self.store, self.version, self.command, self.args = "/var/lib/onggi", False, None, []
        self.__dict__.update(kw)


def _fast_globals(argv: list[str]) -> tuple[Args, int] | None:
    g, i = Args(), 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name in _GLOBAL_VALUES:
            if not eq:
                i += 1
                if i == len(argv):
                    return None
                value = argv[i]
            setattr(g, _GLOBAL_VALUES[name], value)
        elif name in _GLOBAL_FLAGS and not eq:
            setattr(g, _GLOBAL_FLAGS[name], True)
        else:
            return None
        i += 1
    return g, i


def fast_parse(argv: list[str]) -> tuple[Args, Args] | None:
    """(globals, verb args) for a plain hot-path command line; None sends it to argparse,
    which also owns every error message."""
    gi = _fast_globals(argv)
    if gi is None:
        return None
    g, i = gi
    if i == len(argv) or argv[i] not in _HOT_FLAGS or g.log_format not in ("text", "json"):
        return None
    g.command = argv[i]
    flags, names = _HOT_FLAGS[g.command], _HOT_POSITIONALS[g.command]
    values = _HOT_VALUES.get(g.command, {})
    a = Args(**{dest: False for dest in flags.values()}, **_HOT_DEFAULTS.get(g.command, {}))
    positionals, rest = [], argv[i + 1 :]
    while rest:
        tok = rest.pop(0)
        name, eq, value = tok.partition("=")
        if tok in flags:
            setattr(a, flags[tok], True)
        elif name in values:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            setattr(a, values[name], value)
        elif tok.startswith("-") and not tok.lstrip("-").isdigit() or tok == "":
            return None
        else:
            positionals.append(tok)
    if isinstance(a.__dict__.get("preserve_fds"), str):
        if not a.preserve_fds.isdigit():
            return None
        a.preserve_fds = int(a.preserve_fds)
    if not 1 <= len(positionals) <= len(names):
        return None
    for name, value in zip(names, positionals, strict=False):
        setattr(a, name, value)
    if g.command == "kill" and len(positionals) == 1:
        a.signal = "TERM"
    return g, a


def _hot(g: Args, a: Args) -> int:
    if g.command in ("create", "run"):
        return _create(a, g) if g.command == "create" else _run(a, g)
    from runtime import container

    if g.command == "state":
        sys.stdout.write(container.state_text(g.root, a.id))
    elif g.command == "start":
        container.start(g.root, a.id)
    elif g.command == "kill":
        container.kill(g.root, a.id, container.parse_signal(a.signal), a.all)
    else:
        container.delete(g.root, a.id, a.force)
    return 0


def _fast_image(argv: list[str]) -> int | None:
    """A plain `image unpack` (a cached overlay bundle should take milliseconds) goes to the
    image tool without argparse; None when argparse should see the command line."""
    gi = _fast_globals(argv)
    if gi is None or gi[1] == len(argv) or argv[gi[1]] != "image":
        return None
    g, i = gi
    if g.systemd_cgroup or g.log_format not in ("text", "json"):
        return None
    from runtime.image import cli as image_cli

    if image_cli.fast_parse(argv[i + 1 :]) is None:
        return None
    log.setup(g.log, g.log_format, g.debug)
    return image_cli.main(argv[i:], store=g.store)


# Verbs that parse a plain command line themselves and fall back to argparse for the rest:
# engines call them on live containers (pause, resume, update -r, ps; events for stats).
_LIGHT_VERBS = ("pause", "resume", "update", "ps", "events")


def _fast_light(argv: list[str]) -> int | None:
    gi = _fast_globals(argv)
    if gi is None or gi[1] == len(argv) or argv[gi[1]] not in _LIGHT_VERBS:
        return None
    g, i = gi
    if g.log_format not in ("text", "json"):
        return None
    g.command = argv[i]
    log.setup(g.log, g.log_format, g.debug)
    return _verb(g.command)(argv[i + 1 :], g)


def _dispatch(argv: list[str]) -> int:
    fast = fast_parse(argv)
    if fast is not None:
        log.setup(fast[0].log, fast[0].log_format, fast[0].debug)
        return _hot(*fast)
    own = _self_parsing(argv)
    if own is not None:
        log.setup(own[0].log, own[0].log_format, own[0].debug)
        return _verb(own[0].command)(own[1], own[0])
    image = _fast_image(argv)
    if image is not None:
        return image
    light = _fast_light(argv)
    if light is not None:
        return light
    g = _global_parser().parse_args(argv)
    log.setup(g.log, g.log_format, g.debug)
    if g.version:
        from runtime import help

        sys.stdout.write(help.version_text())
        return 0
    if g.help or g.command is None:
        return _help(None, g)
    if g.command in ("help", "h"):
        return _help(g.args[0] if g.args else None, g)
    if g.command in IMAGE_VERBS:
        from runtime.image.cli import main as image_main

        gc.enable()  # pulls are long and allocate much; cached unpacks take the fast path

        return image_main([g.command, *g.args], store=g.store)
    return _verb(g.command)(g.args, g)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        return _dispatch(argv)
    except OnggiError as e:
        return _fail(str(e), e.code)
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        if e.errno == _EPIPE and _stdio_closed():
            _die_of_sigpipe()
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"{where}{(e.strerror or str(e)).lower()}", 1)
    except Exception as e:  # noqa: BLE001 - the user gets one line, --debug the traceback
        if debug:
            raise
        return _fail(f"internal error: {type(e).__name__}: {e}", 1)


def _fail(msg: str, code: int) -> int:
    msg = " ".join(msg.split("\n"))
    log.error(msg)
    try:
        sys.stderr.write(f"onggi: {msg}\n")
    except BrokenPipeError:
        _die_of_sigpipe()
    return code


_EPIPE = 32


def _stdio_closed() -> bool:
    """Whether our stdout or stderr is a pipe nobody reads any more (poll says POLLERR),
    as opposed to EPIPE from a hook's stdin or a socket, which is an error like any other."""
    import select

    poller = select.poll()
    for fd in (1, 2):
        poller.register(fd, select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


def _die_of_sigpipe() -> None:
    """A closed pipe on stdout ends us quietly by SIGPIPE, as it ends runc (Go turns EPIPE on
    fds 1 and 2 into a real SIGPIPE): `onggi list | head -1` prints no error. Not set up
    front, since hooks and sockets rely on EPIPE being an error."""
    import _signal

    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGPIPE)
    os._exit(128 + _signal.SIGPIPE)


def entry() -> None:
    """The console script, tuned for a short life: engines pay its start-up on every call.
    The cyclic GC is off (its passes over the objects imports create cost ~5 ms; reference
    counting frees the rest), and it leaves through os._exit: the interpreter's teardown,
    freeing every module, costs another ~5 ms."""
    gc.disable()
    try:
        code = main()
    except SystemExit as e:  # argparse's --help
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            _die_of_sigpipe()
        except OSError:
            pass
    os._exit(code if isinstance(code, int) else 1)
