"""`onggi --help`, `onggi help VERB`, `onggi VERB --help` and `--version`, in runc's layout
(urfave/cli v1's templates: NAME, USAGE, VERSION, COMMANDS, GLOBAL OPTIONS; a verb's
NAME, USAGE, DESCRIPTION, OPTIONS), so scripts and people who read runc's find their way.

A verb's OPTIONS come from its own argparse parser (runtime.cli._parser renders its help
here), so a flag is described once, where it is parsed.
"""

from __future__ import annotations

import os
import sys

from runtime import OCI_VERSION, __version__
from runtime.state import DEFAULT_ROOT

_ID = "<container-id>"
_WHERE_NEW = (f'\n\nWhere "{_ID}" is your name for the instance of the container that you\n'
              "are starting. The name you provide for the container instance must be unique on\n"
              "your host.")
_WHERE = f'\n\nWhere "{_ID}" is the name for the instance of the container.'
_CREATE_DESC = (
    "The create command creates an instance of a container for a bundle. The bundle\n"
    'is a directory with a specification file named "config.json" and a root\nfilesystem.\n\n'
    "The specification file includes an args parameter. The args parameter is used\n"
    "to specify command(s) that get run when the container is started. To change the\n"
    "command(s) that get executed on start, edit the args parameter of the spec. See\n"
    '"onggi spec --help" for more explanation.')

# verb -> (ArgsUsage, Description), runc's texts where runc has the verb.
TOPICS: dict[str, tuple[str, str]] = {
    "create": (_ID + _WHERE_NEW, _CREATE_DESC),
    "run": (_ID + _WHERE_NEW, _CREATE_DESC.replace("The create command", "The run command")),
    "start": (_ID + _WHERE_NEW,
              "The start command executes the user defined process in a created container."),
    "state": (f'{_ID}\n\nWhere "{_ID}" is your name for the instance of the container.',
              "The state command outputs current state information for the\n"
              "instance of a container."),
    "kill": (f'{_ID} [signal]\n\nWhere "{_ID}" is the name for the instance of the container and\n'
             '"[signal]" is the signal to be sent to the init process.\n\n'
             'EXAMPLE:\nFor example, if the container id is "ubuntu01" the following will send a '
             '"KILL"\nsignal to the init process of the "ubuntu01" container:\n\n'
             "       # onggi kill ubuntu01 KILL", ""),
    "delete": (_ID + _WHERE + "\n\nEXAMPLE:\n"
               'For example, if the container id is "ubuntu01" and onggi list currently shows '
               'the\nstatus of "ubuntu01" as "stopped" the following will delete resources held '
               'for\n"ubuntu01" removing "ubuntu01" from the onggi list of containers:\n\n'
               "       # onggi delete ubuntu01", ""),
    "list": ('\n\nWhere the given root is specified via the global option "--root"\n'
             f'(default: "{DEFAULT_ROOT}").\n\nEXAMPLE 1:\n'
             'To list containers created via the default "--root":\n       # onggi list\n\n'
             'EXAMPLE 2:\nTo list containers created using a non-default value for "--root":\n'
             "       # onggi --root value list", ""),
    "ps": (f"{_ID} [ps options]", ""),
    "spec": ("", "The spec command creates the new specification file named \"config.json\" "
             "for\nthe bundle."),
    "features": ("", "Show the enabled features.\n   The result is parsable as a JSON.\n"
                 "   The types are experimental and subject to change.\n"),
    "validate": ("", "Check a bundle's config.json as create would; with --strict, also report\n"
                 "where the spec's JSON schema is stricter than runc (as warnings)."),
}

IMAGE_VERBS = {
    "image": "pull images, list them and unpack them into bundles",
    "pull": "pull an image (onggi image pull)",
    "images": "list the images in the store (onggi image ls)",
    "rmi": "remove images (onggi image rm)",
}

# The global options, as `onggi --help` lists them (runc's, then onggi's own).
GLOBAL_OPTIONS = [
    ("--debug", "enable debug logging"),
    ("--log value", "set the log file to write onggi logs to (default is '/dev/stderr')"),
    ("--log-format value", "set the log format ('text' (default), or 'json') (default: \"text\")"),
    ("--root value", "root directory for storage of container state (this should be located in "
     f'tmpfs) (default: "{DEFAULT_ROOT}")'),
    ("--criu value", 'path to the criu binary used for checkpoint and restore (default: "criu")'),
    ("--systemd-cgroup", "enable systemd cgroup support, expects cgroupsPath to be of form "
     "\"slice:prefix:name\" for e.g. \"system.slice:runc:434234\""),
    ("--rootless value", "ignore cgroup permission errors ('true', 'false', or 'auto') "
     '(default: "auto")'),
    ("--store value", 'image store directory (default: "/var/lib/onggi")'),
    ("--help, -h", "show help"),
    ("--version, -v", "print the version"),
]


def _columns(rows: list[tuple[str, str]]) -> str:
    """Go's tabwriter(minwidth 1, padding 2) under a three-space indent."""
    width = max(len(a) for a, _ in rows) + 2
    return "".join(f"   {a.ljust(width)}{b}".rstrip(" ") + "\n" if b else f"   {a}\n"
                   for a, b in rows)


def app_help(verbs: dict[str, tuple[str, str]]) -> str:
    commands = [(name, summary) for name, (_, summary) in sorted(verbs.items())]
    commands += list(IMAGE_VERBS.items())
    commands.append(("help, h", "Shows a list of commands or help for one command"))
    return (
        "NAME:\n   onggi - Open Container Initiative runtime\n\n"
        "onggi is a command line client for running applications packaged according to\n"
        "the Open Container Initiative (OCI) format, with runc's command line, and an image\n"
        "tool that pulls images and unpacks them into bundles.\n\n"
        "To start a new instance of a container:\n\n"
        "    # onggi run [ -b bundle ] <container-id>\n\n"
        "USAGE:\n   onggi [global options] command [command options] [arguments...]\n\n"
        f"VERSION:\n   {version_text().removeprefix('onggi version ')}\n"
        f"COMMANDS:\n{_columns(commands)}\n"
        f"GLOBAL OPTIONS:\n{_columns(GLOBAL_OPTIONS)}"
    )


def _flag_cell(action) -> str:
    takes_value = action.nargs != 0
    longs = [o for o in action.option_strings if o.startswith("--")]
    shorts = [o for o in action.option_strings if not o.startswith("--")]
    return ", ".join(o + (" value" if takes_value else "") for o in longs + shorts)


def _flag_usage(action) -> str:
    text = action.help or ""
    default = action.default
    if action.nargs != 0 and default is not None and not isinstance(default, bool) \
            and "default" not in text:
        if isinstance(default, str) and default:
            text += f' (default: "{default}")'
        elif isinstance(default, int):
            text += f" (default: {default})"
    return text


def verb_help(parser, summary: str) -> str:
    """A verb's help from its argparse parser (prog "onggi VERB")."""
    verb = parser.prog.split()[-1]
    flags = [a for a in parser._actions
             if a.option_strings and a.help != "==SUPPRESS==" and "-h" not in a.option_strings]
    positional = [a for a in parser._actions if not a.option_strings]
    args_usage, desc = TOPICS.get(verb, (None, ""))
    if args_usage is None:
        names = [_ID if a.dest == "id" else f"[{a.dest}]" if a.nargs in ("?", "*", "...")
                 else f"<{a.dest}>" for a in positional]
        args_usage = " ".join(names)
    out = f"NAME:\n   {parser.prog} - {summary}\n\nUSAGE:\n   {parser.prog}"
    if flags:
        out += " [command options]"
    out += " " + (args_usage or "[arguments...]")
    if desc:
        out += f"\n\nDESCRIPTION:\n   {desc}"
    if flags:
        out += "\n\nOPTIONS:\n" + _columns([(_flag_cell(a), _flag_usage(a)) for a in flags])
        out += "   \n"
    else:
        out += "\n"
    return out


def _git_commit() -> str | None:
    """The checkout's HEAD commit, read from .git without running git."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    gitdir = os.path.join(repo, ".git")
    try:
        if os.path.isfile(gitdir):
            with open(gitdir) as f:
                gitdir = os.path.join(repo, f.read().strip().removeprefix("gitdir: "))
        with open(os.path.join(gitdir, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        common = gitdir
        if os.path.isfile(os.path.join(gitdir, "commondir")):
            with open(os.path.join(gitdir, "commondir")) as f:
                common = os.path.normpath(os.path.join(gitdir, f.read().strip()))
        for d in (gitdir, common):
            try:
                with open(os.path.join(d, ref)) as f:
                    return f.read().strip()
            except FileNotFoundError:
                continue
        with open(os.path.join(common, "packed-refs")) as f:
            for line in f:
                sha, _, name = line.strip().partition(" ")
                if name == ref:
                    return sha
    except OSError:
        return None
    return None


def libseccomp_version() -> str | None:
    """libseccomp's own version (seccomp_version()), through ctypes: no pyseccomp import."""
    import ctypes

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    if v.major + v.minor + v.micro == 0:
        return None
    return f"{v.major}.{v.minor}.{v.micro}"


def version_text() -> str:
    """As `runc --version`: version, commit (when known), spec, runtime language, libseccomp."""
    lines = [f"onggi version {__version__}"]
    commit = _git_commit()
    if commit:
        lines.append(f"commit: {commit}")
    lines += [f"spec: {OCI_VERSION}", f"python: {sys.version.split()[0]}"]
    seccomp = libseccomp_version()
    if seccomp:
        lines.append(f"libseccomp: {seccomp}")
    return "\n".join(lines) + "\n"
