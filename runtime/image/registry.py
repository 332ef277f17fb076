"""A client of the OCI distribution API: manifests, blobs, Bearer/Basic auth, retries."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from runtime.errors import OnggiError
from runtime.image import mediatypes as mt
from runtime.image.progress import Progress
from runtime.image.reference import Reference
from runtime.image.store import DigestMismatch, Store, sha256_hex

RETRIES = 4
CHUNK = 1 << 20
TIMEOUT = float(os.environ.get("ONGGI_REGISTRY_TIMEOUT", "60"))  # seconds without a byte


class RegistryError(OnggiError):
    pass


class _Transient(Exception):
    """A failure worth retrying: connection trouble, 5xx, 429."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'([A-Za-z]+)="?((?<=")[^"]*|[^,"\s]*)"?', rest))
    return scheme.lower(), params


def _auth_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    files.append(Path(docker) / "config.json")
    return files


def find_credentials(registry: str, repository: str) -> tuple[str, str] | None:
    """user/password for a registry from containers' auth.json or Docker's config.json."""
    keys = [f"{registry}/{repository}", registry, f"https://{registry}", f"http://{registry}"]
    if registry == "docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
    for f in _auth_files():
        try:
            auths = json.loads(f.read_text()).get("auths") or {}
        except (OSError, ValueError):
            continue
        for k in keys:
            entry = auths.get(k) or auths.get(k.rstrip("/"))
            if isinstance(entry, dict) and entry.get("auth"):
                try:
                    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise OnggiError(f"{f}: auths.{k}.auth: not base64 of user:password") from None
                return user, pw
    return None


class Registry:
    """One registry/repository; safe to share between download threads."""

    def __init__(self, ref: Reference, tls_verify: bool | None = None, plain_http: bool | None = None) -> None:
        self.ref = ref
        self.host = ref.api_host
        # Like Docker, loopback registries are insecure ones: plain HTTP first, and HTTPS
        # without verification if the server says it speaks TLS. --tls-verify=true insists
        # on verified TLS; --tls-verify=false also allows plain HTTP.
        self.tls_verify = (not ref.is_loopback) if tls_verify is None else tls_verify
        self.https_upgrade = not plain_http and tls_verify is None and ref.is_loopback
        self.http_fallback = tls_verify is False and not plain_http
        self.scheme = "http" if plain_http or self.https_upgrade else "https"
        self.creds = find_credentials(ref.registry, ref.repository)
        self.auth_header: str | None = None
        self.auth_lock = threading.Lock()
        self.local = threading.local()

    # -- transport --------------------------------------------------------------------------
    def _conn(self, scheme: str, host: str) -> Any:
        import http.client

        cache = self.local.__dict__.setdefault("conns", {})
        c = cache.get((scheme, host))
        if c is None:
            if scheme == "https":
                import ssl

                ctx = ssl.create_default_context()
                if not self.tls_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                c = http.client.HTTPSConnection(host, timeout=TIMEOUT, context=ctx)
            else:
                c = http.client.HTTPConnection(host, timeout=TIMEOUT)
            cache[(scheme, host)] = c
        return c

    def _drop(self, scheme: str, host: str) -> None:
        cache = self.local.__dict__.setdefault("conns", {})
        c = cache.pop((scheme, host), None)
        if c is not None:
            c.close()

    def _send(self, method: str, url: str, headers: dict[str, str]) -> Any:
        """One HTTP exchange; follows redirects (blob storage), no auth beyond the first host."""
        for _ in range(5):
            u = urllib.parse.urlsplit(url)
            path = u.path + (f"?{u.query}" if u.query else "")
            c = self._conn(u.scheme, u.netloc)
            try:
                c.request(method, path, headers=headers)
                r = c.getresponse()
            except OSError as e:
                self._drop(u.scheme, u.netloc)
                _tls_failure(e, u.netloc)
                if self._upgrade(u.scheme, u.netloc):
                    url = url.replace("http://", "https://", 1)
                    continue
                if "WRONG_VERSION_NUMBER" in str(e) and u.scheme == "https":
                    if self.http_fallback and u.netloc == self.host:
                        # The registry speaks plain HTTP: go on in HTTP, as Docker and skopeo do.
                        self.scheme = "http"
                        url = url.replace("https://", "http://", 1)
                        continue
                    raise RegistryError(
                        f"{u.netloc}: the server speaks plain HTTP; use --plain-http or --tls-verify=false"
                    ) from None
                raise _Transient(f"{u.netloc}: {e}") from None
            except Exception as e:  # http.client.HTTPException and friends
                self._drop(u.scheme, u.netloc)
                if self._upgrade(u.scheme, u.netloc):
                    url = url.replace("http://", "https://", 1)
                    continue
                raise _Transient(f"{u.netloc}: {type(e).__name__}: {e}") from None
            if r.status == 400 and self.https_upgrade and u.scheme == "http":
                body = r.read()
                if b"HTTPS server" in body and self._upgrade(u.scheme, u.netloc):
                    url = url.replace("http://", "https://", 1)
                    continue
                return _Replay(r, body)
            if r.status in (301, 302, 303, 307, 308) and r.getheader("Location"):
                r.read()
                new = urllib.parse.urljoin(url, r.getheader("Location"))
                if urllib.parse.urlsplit(new).netloc != u.netloc:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = new
                continue
            return r
        raise RegistryError(f"{url}: too many redirects")

    def _upgrade(self, scheme: str, netloc: str) -> bool:
        """Plain HTTP to a loopback registry that speaks TLS: switch to HTTPS, once."""
        if not (self.https_upgrade and scheme == "http" and netloc == self.host):
            return False
        self.https_upgrade = False
        self.scheme = "https"
        return True

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        """A request to /v2/...; handles 401 challenges and retries transient failures."""
        url = f"{self.scheme}://{self.host}{path}"
        delay = 0.2
        for attempt in range(RETRIES + 1):
            h = dict(headers or {})
            if self.auth_header:
                h["Authorization"] = self.auth_header
            try:
                r = self._send(method, url, h)
                url = f"{self.scheme}://{self.host}{path}"  # the scheme may have changed
                if r.status == 401:
                    r.read()  # free the connection: the token server may be this same host
                if r.status == 401 and self._authenticate(r):
                    h["Authorization"] = self.auth_header or ""
                    r = self._send(method, url, h)
                if r.status in (429, 500, 502, 503, 504):
                    r.read()
                    raise _Transient(f"{self.host}: HTTP {r.status}")
                return r
            except _Transient as e:
                if attempt == RETRIES:
                    raise RegistryError(f"{self.ref.registry}: {e} (after {RETRIES} retries)") from None
                time.sleep(delay + random.random() * delay / 2)
                delay *= 2
        raise AssertionError("unreachable")

    def request_body(self, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[Any, bytes]:
        """A request whose whole (small) body is read inside the retries."""
        delay = 0.2
        for attempt in range(RETRIES + 1):
            r = self.request(method, path, headers)
            try:
                return r, r.read()
            except Exception as e:  # a reset or a timeout half-way through the body
                self._drop(self.scheme, self.host)
                if attempt == RETRIES:
                    raise RegistryError(f"{self.ref.registry}{path}: {e or type(e).__name__} "
                                        f"(after {RETRIES} retries)") from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- auth ---------------------------------------------------------------------------
    def _authenticate(self, r: Any) -> bool:
        hdr = r.getheader("WWW-Authenticate") or ""
        scheme, params = parse_challenge(hdr)
        with self.auth_lock:
            if scheme == "basic":
                if not self.creds:
                    raise RegistryError(
                        f"{self.ref.registry}: authentication required and no credentials in "
                        f"~/.docker/config.json or $XDG_RUNTIME_DIR/containers/auth.json"
                    )
                raw = f"{self.creds[0]}:{self.creds[1]}".encode()
                self.auth_header = "Basic " + base64.b64encode(raw).decode()
                return True
            if scheme == "bearer" and params.get("realm"):
                self.auth_header = "Bearer " + self._token(params)
                return True
        return False

    def _token(self, params: dict[str, str]) -> str:
        q = {"service": params.get("service", "")}
        q["scope"] = params.get("scope") or f"repository:{self.ref.repository}:pull"
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(q)
        h = {}
        if self.creds:
            raw = f"{self.creds[0]}:{self.creds[1]}".encode()
            h["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            r = self._send("GET", url, h)
            body = r.read()
        except _Transient as e:
            raise RegistryError(f"token server {params['realm']}: {e}") from None
        if r.status != 200:
            raise RegistryError(f"token server {params['realm']}: HTTP {r.status}: {body[:200]!r}")
        try:
            doc = json.loads(body)
            return doc.get("token") or doc["access_token"]
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"token server {params['realm']}: no token in its answer") from None

    # -- API ----------------------------------------------------------------------------
    def get_manifest(self, reference: str, accept: str = mt.ACCEPT) -> tuple[bytes, str | None, str]:
        """(bytes, media type from Content-Type, digest); a digest reference is verified."""
        path = f"/v2/{self.ref.repository}/manifests/{reference}"
        r, body = self.request_body("GET", path, {"Accept": accept})
        if r.status == 404:
            raise RegistryError(f"{self.ref.name}:{reference}: manifest unknown (HTTP 404)")
        if r.status == 401:
            raise RegistryError(f"{self.ref.name}:{reference}: unauthorized (HTTP 401)")
        if r.status != 200:
            raise RegistryError(f"{self.ref.name}:{reference}: HTTP {r.status}: {body[:200]!r}")
        if len(body) > 4 << 20:
            raise RegistryError(f"{self.ref.name}:{reference}: manifest larger than 4 MiB")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest {self.ref.name}@{reference}", reference, digest)
        return body, r.getheader("Content-Type"), digest

    def fetch_blob(self, store: Store, desc: dict[str, Any], progress: Progress) -> bool:
        """Stream a blob into the store, hashing while reading; resumes a partial download.

        Returns False when the blob was already there (it is never fetched twice)."""
        digest = desc["digest"]
        size = desc.get("size")
        hexd = sha256_hex(digest)
        dest = store.blob_path(digest)
        label = hexd[:12]
        with store.lock(hexd):
            if dest.is_file():
                return False  # another pull fetched it while we waited for the lock
            part = store.tmp / f"{hexd}.partial"
            progress.start(hexd, label, size)
            delay = 0.2
            got = ""
            resumed = part.exists()
            for attempt in range(RETRIES + 1):
                try:
                    got = self._download(part, digest, size, hexd, progress)
                    if got != digest and resumed:
                        # What a dead pull left does not add up: start over once, from zero.
                        part.unlink()
                        resumed = False
                        got = self._download(part, digest, size, hexd, progress)
                    break
                except _Transient as e:
                    if attempt == RETRIES:
                        raise RegistryError(f"blob {digest}: {e} (after {RETRIES} retries)") from None
                    time.sleep(delay)
                    delay *= 2
            if got != digest:
                part.unlink()
                raise DigestMismatch(f"blob {digest} from {self.ref.name}", digest, got)
            if size is not None and part.stat().st_size != size:
                n = part.stat().st_size
                part.unlink()
                raise RegistryError(f"blob {digest}: got {n} bytes, descriptor says {size}")
            os.rename(part, dest)
            progress.done(hexd)
        return True

    def _download(self, part: Path, digest: str, size: int | None, key: str, progress: Progress) -> str:
        """Append to the partial file, hashing as bytes arrive; returns the digest."""
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        h = _hash_file(part) if have else hashlib.sha256()
        if have and have == size:
            return "sha256:" + h.hexdigest()  # a dead pull got it all: just verify it
        headers = {"Range": f"bytes={have}-"} if have else {}
        r = self.request("GET", f"/v2/{self.ref.repository}/blobs/{digest}", headers)
        if r.status == 416 and have:
            self._drop(self.scheme, self.host)  # no body worth waiting for
            part.unlink()
            raise _Transient("range not satisfiable; restarting")
        if r.status not in (200, 206):
            body = r.read()
            raise RegistryError(f"blob {digest}: HTTP {r.status}: {body[:200]!r}")
        mode = "ab" if r.status == 206 else "wb"
        if mode == "wb" and have:
            h = hashlib.sha256()  # the server ignored Range: start over
        elif have:
            progress.update(key, have)
        hasher = _Hasher(h)
        try:
            with open(part, mode, buffering=0) as f:
                while True:
                    try:
                        c = r.read(CHUNK)
                    except OSError as e:
                        self._drop(self.scheme, self.host)
                        raise _Transient(f"reading blob: {e}") from None
                    if not c:
                        break
                    hasher.put(c)  # sha256 runs on the other core while we receive and write
                    f.write(c)
                    progress.update(key, len(c))
                n = f.tell()
        finally:
            hasher.close()
        if size is not None and n < size:
            self._drop(self.scheme, self.host)
            raise _Transient(f"blob {digest}: connection closed at {n} of {size} bytes")
        return "sha256:" + h.hexdigest()


class _Replay:
    """A response whose body was already read (to look for a TLS hint)."""

    def __init__(self, r: Any, body: bytes) -> None:
        self.status, self._r, self._body = r.status, r, body

    def getheader(self, name: str, default: Any = None) -> Any:
        return self._r.getheader(name, default)

    def read(self, n: int = -1) -> bytes:
        out, self._body = (self._body, b"") if n is None or n < 0 else (self._body[:n], self._body[n:])
        return out


class _Hasher:
    """Feeds a hash from a worker thread: hashlib drops the GIL, so hashing overlaps I/O."""

    def __init__(self, h: Any) -> None:
        import queue

        self.h = h
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while (c := self.q.get()) is not None:
            self.h.update(c)

    def put(self, c: bytes) -> None:
        self.q.put(c)

    def close(self) -> None:
        self.q.put(None)
        self.t.join()


def _tls_failure(e: OSError, where: str) -> None:
    """Certificate problems are not transient: say so at once, with the way out."""
    import ssl

    if isinstance(e, ssl.SSLCertVerificationError):
        raise RegistryError(
            f"{where}: TLS certificate not trusted ({e.verify_message}); "
            "use --tls-verify=false for a registry you trust"
        ) from None


def _hash_file(path: Path) -> Any:
    """The running hash of what a partial download already holds."""
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256")
