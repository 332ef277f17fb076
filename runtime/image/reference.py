"""Image reference parsing with Docker's defaults (docker.io, library/, :latest)."""

from __future__ import annotations

import re

from runtime.errors import OnggiError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$")


class Reference:
    """A registry reference; `tag` or `digest` (or both) identify the manifest.

    A plain class, not a dataclass: dataclasses (and inspect) cost ~15 ms to import."""

    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry: str, repository: str, tag: str | None = None, digest: str | None = None) -> None:
        self.registry, self.repository, self.tag, self.digest = registry, repository, tag, digest

    def _key(self) -> tuple[str, str, str | None, str | None]:
        return (self.registry, self.repository, self.tag, self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Reference({self.registry!r}, {self.repository!r}, {self.tag!r}, {self.digest!r})"

    @property
    def api_host(self) -> str:
        # Docker Hub's API lives on a different host than its name.
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def is_loopback(self) -> bool:
        host = self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry
        host = host.strip("[]")
        return host in ("localhost", "::1") or host.startswith("127.")


class Source:
    """Where `pull` reads from: a registry, an OCI layout directory or a docker-archive file."""

    __slots__ = ("kind", "ref", "path", "tag")

    def __init__(self, kind: str, ref: Reference | None = None, path: str = "", tag: str | None = None) -> None:
        self.kind = kind  # "registry" | "oci" | "docker-archive"
        self.ref, self.path, self.tag = ref, path, tag


def check_digest(d: str, what: str = "digest") -> str:
    if not _DIGEST.match(d):
        raise OnggiError(f"{what} {d!r}: not a sha256 digest (sha256:<64 hex>)")
    return d


def parse_reference(text: str) -> Reference:
    """Parse `[host[:port]/]repo[:tag][@sha256:...]` the way Docker does."""
    if not text or text != text.strip():
        raise OnggiError(f"reference {text!r}: empty or has spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        check_digest(digest, f"reference {text!r}: digest")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise OnggiError(f"reference {text!r}: invalid tag {tag!r}")
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, parts[1:]
        if not _HOST.match(registry):
            raise OnggiError(f"reference {text!r}: invalid registry host {registry!r}")
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    for comp in path:
        if not _COMPONENT.match(comp):
            raise OnggiError(f"reference {text!r}: invalid repository component {comp!r} (lowercase letters, digits, . _ -)")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, "/".join(path), tag, digest)


def parse_source(text: str) -> Source:
    """`oci:DIR[:TAG]`, `docker-archive:FILE[:NAME:TAG]` or a registry reference."""
    if text.startswith("oci:"):
        body = text[4:]
        path, _, tag = body.partition(":")
        if not path:
            raise OnggiError(f"reference {text!r}: oci: needs a directory")
        return Source("oci", path=path, tag=tag or None)
    if text.startswith("docker-archive:"):
        body = text[len("docker-archive:") :]
        path, _, name = body.partition(":")
        if not path:
            raise OnggiError(f"reference {text!r}: docker-archive: needs a file")
        return Source("docker-archive", path=path, tag=name or None)
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    return Source("registry", ref=parse_reference(text))


def normalize_name(text: str) -> str:
    """The store's key for a name: `registry/repo:tag` (or `registry/repo@digest`)."""
    r = parse_reference(text)
    return str(Reference(r.registry, r.repository, r.tag, None if r.tag else r.digest))
