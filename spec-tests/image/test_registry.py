"""Pulls from a real registry (Debian's docker-registry) on 127.0.0.1.

A small in-test front proxy adds what the plain registry lacks: a Bearer token server
(the WWW-Authenticate realm/service/scope dance), Basic auth, injected 503s, throttling,
and a log of what the client sent."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from imgtest import PY, REPO, image, imagefix

from runtime.errors import OnggiError
from runtime.image.store import Store

E = imagefix.E

USER, PASSWORD, TOKEN = "alice", "s3cret", "tok-8c1f"


class Proxy:
    """auth: "none" | "bearer" | "basic". Forwards /v2/ to the registry."""

    def __init__(self, upstream: str, auth: str = "none") -> None:
        self.upstream, self.auth = upstream, auth
        self.log: list[dict[str, Any]] = []
        self.fail: dict[str, int] = {}  # path substring -> number of 503s to answer
        self.throttle: dict[str, float] = {}  # path substring -> seconds per 64 KiB
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.handle_any()

            def do_GET(self) -> None:
                self.handle_any()

            def handle_any(self) -> None:
                entry = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                         "start": time.monotonic(), "end": None}
                proxy.log.append(entry)
                try:
                    self.serve(entry)
                finally:
                    entry["end"] = time.monotonic()

            def serve(self, entry: dict[str, Any]) -> None:
                if self.path.startswith("/token"):
                    return self.token()
                if not proxy.authorized(self.headers.get("Authorization", "")):
                    return self.challenge()
                for sub, n in list(proxy.fail.items()):
                    if sub in self.path and n > 0:
                        proxy.fail[sub] = n - 1
                        return self.reply(503, b"busy")
                c = http.client.HTTPConnection(proxy.upstream, timeout=30)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
                c.request(self.command, self.path, headers=hdrs)
                r = c.getresponse()
                if r.status in (301, 302, 307):
                    self.send_response(r.status)
                    self.send_header("Location", r.getheader("Location"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(r.status)
                for k in ("Content-Type", "Docker-Content-Digest", "Content-Length", "Content-Range", "Accept-Ranges"):
                    if r.getheader(k):
                        self.send_header(k, r.getheader(k))
                if r.getheader("Content-Length") is None:
                    body = r.read()
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.end_headers()
                delay = next((v for k, v in proxy.throttle.items() if k in self.path), 0.0)
                while True:
                    chunk = r.read(65536)
                    if not chunk:
                        break
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        break
                    if delay:
                        time.sleep(delay)
                c.close()

            def token(self) -> None:
                want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                self.reply(200, json.dumps({"token": TOKEN}).encode(), "application/json")

            def challenge(self) -> None:
                if proxy.auth == "bearer":
                    host = f"127.0.0.1:{proxy.port}"
                    repo = self.path.split("/")[2:4]
                    v = (f'Bearer realm="http://{host}/token",service="onggi-test",'
                         f'scope="repository:{"/".join(repo)}:pull"')
                else:
                    v = 'Basic realm="onggi-test"'
                self.send_response(401)
                self.send_header("WWW-Authenticate", v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def authorized(self, header: str) -> bool:
        if self.auth == "bearer":
            return header == f"Bearer {TOKEN}"
        if self.auth == "basic":
            return header == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return True

    def gets(self, sub: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e["method"] == "GET" and sub in e["path"]]

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *a: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


_n = [0]


def push(registry: Any, work: Path, entries: list[E] | None = None, tag: str = "v1", repo: str | None = None,
         arch_layouts: list[str] | None = None, docker_types: bool = False) -> tuple[str, str]:
    """Push a fresh image (busybox + a unique layer); returns (repo, top digest)."""
    _n[0] += 1
    repo = repo or f"test/img{_n[0]}-{os.getpid()}"
    lay = work / f"push-{_n[0]}"
    w = imagefix.OCIWriter(lay)
    base = imagefix.tar_bytes(imagefix.busybox_entries())
    uniq = entries or [E("unique", data=f"{repo}:{tag}:{time.time()}".encode())]
    if arch_layouts:
        descs = []
        for a in arch_layouts:
            d = w.image([(base, "gzip"), (imagefix.tar_bytes([E("arch", data=a.encode())]), "gzip")],
                        imagefix.image_config(["sh"], arch=a), docker_types=docker_types)
            descs.append(d)
        w.tag(w.multi(descs, docker_types=docker_types), tag)
    else:
        w.tag(w.image([(base, "gzip"), (imagefix.tar_bytes(uniq), "gzip")], imagefix.image_config(["sh"])), tag)
    digest = imagefix.push_layout(lay, registry.host, repo, tag)
    return repo, digest


def rec_of(store: Path, name: str) -> dict[str, Any]:
    return Store(store).read_index()["images"][name]


def test_pull_by_tag_then_by_digest(registry: Any, work: Path, store: Path) -> None:
    repo, digest = push(registry, work)
    ref = f"{registry.host}/{repo}:v1"
    assert image(["pull", "-q", ref], store) == 0
    assert rec_of(store, ref)["digest"] == digest
    byd = f"{registry.host}/{repo}@{digest}"
    assert image(["image", "pull", "-q", byd], store) == 0
    assert rec_of(store, byd)["manifest"] == digest
    assert image(["image", "unpack", "-q", byd, str(work / "b")], store) == 0
    assert (work / "b" / "rootfs" / "unique").read_bytes().startswith(repo.encode())
    with pytest.raises(OnggiError, match="manifest unknown"):
        image(["pull", "-q", f"{registry.host}/{repo}:nope"], store)


@pytest.mark.parametrize("docker_types", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_index_with_two_platforms(docker_types: bool, registry: Any, work: Path, store: Path) -> None:
    repo, digest = push(registry, work, arch_layouts=["amd64", "arm64"], docker_types=docker_types)
    ref = f"{registry.host}/{repo}:v1"
    from runtime.image.pull import host_platform

    host_arch = host_platform()[1]
    assert image(["pull", "-q", ref], store) == 0
    rec = rec_of(store, ref)
    assert rec["digest"] == digest and rec["manifest"] != digest
    assert image(["image", "unpack", "-q", ref, str(work / "host")], store) == 0
    if host_arch in ("amd64", "arm64"):
        assert (work / "host" / "rootfs" / "arch").read_text() == host_arch
    other = work / "store2"
    assert image(["pull", "-q", "--platform", "linux/arm64", ref], other) == 0
    assert image(["image", "unpack", "-q", ref, str(work / "arm")], other) == 0
    assert (work / "arm" / "rootfs" / "arch").read_text() == "arm64"
    cfg = json.loads((work / "arm" / "config.json").read_text())
    assert cfg["annotations"]["org.opencontainers.image.architecture"] == "arm64"
    with pytest.raises(OnggiError, match=r"no manifest for platform linux/s390x \(has: linux/amd64, linux/arm64\)"):
        image(["pull", "-q", "--platform", "linux/s390x", ref], work / "store3")


def test_bearer_token_flow(registry: Any, work: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, digest = push(registry, work)
    cfgdir = work / "docker"
    cfgdir.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with Proxy(registry.host, "bearer") as px:
        monkeypatch.setenv("DOCKER_CONFIG", str(work / "nocreds"))
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
        with pytest.raises(OnggiError, match="token server .*/token: HTTP 401"):
            image(["pull", "-q", f"{px.host}/{repo}:v1"], store)
        (cfgdir / "config.json").write_text(json.dumps({"auths": {px.host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(cfgdir))
        assert image(["pull", "-q", f"{px.host}/{repo}:v1"], store) == 0
        toks = [e for e in px.log if e["path"].startswith("/token")]
        assert toks and "service=onggi-test" in toks[-1]["path"]
        assert f"scope=repository%3A{repo.replace('/', '%2F')}%3Apull" in toks[-1]["path"]
        blobs = px.gets("/blobs/")
        assert blobs and all(e["headers"].get("Authorization") == f"Bearer {TOKEN}" for e in blobs)
    assert rec_of(store, f"{px.host}/{repo}:v1")["digest"] == digest


def test_basic_auth_from_containers_auth_json(registry: Any, work: Path, store: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = push(registry, work)
    run = work / "run"
    (run / "containers").mkdir(parents=True)
    with Proxy(registry.host, "basic") as px:
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (run / "containers" / "auth.json").write_text(json.dumps({"auths": {px.host: {"auth": auth}}}))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
        monkeypatch.setenv("DOCKER_CONFIG", str(work / "nocreds"))
        assert image(["pull", "-q", f"{px.host}/{repo}:v1"], store) == 0
        assert px.gets("/blobs/")[0]["headers"]["Authorization"].startswith("Basic ")


def test_corrupted_blob_is_rejected_and_not_kept(registry: Any, work: Path, store: Path) -> None:
    repo, digest = push(registry, work, entries=[E("corrupt-me", data=b"A" * 5000)])
    man = json.loads(registry.blob_data_path(repo, digest).read_bytes())
    layer = man["layers"][1]["digest"]
    p = registry.blob_data_path(repo, layer)
    good = p.read_bytes()
    p.write_bytes(good[:-8] + b"XXXXXXXX")
    try:
        with pytest.raises(OnggiError, match=f"blob {layer} from .*: digest mismatch: expected {layer}, got sha256:"):
            image(["pull", "-q", f"{registry.host}/{repo}:v1"], store)
        s = Store(store)
        assert not s.has_blob(layer)
        assert list(s.tmp.iterdir()) == []
        assert s.read_index()["images"] == {}
    finally:
        p.write_bytes(good)
    assert image(["pull", "-q", f"{registry.host}/{repo}:v1"], store) == 0


def test_blob_in_store_is_never_fetched_again(registry: Any, work: Path, store: Path, capsys: Any) -> None:
    repo_a, _ = push(registry, work)
    repo_b, _ = push(registry, work)
    with Proxy(registry.host) as px:
        assert image(["pull", f"{px.host}/{repo_a}:v1"], store) == 0
        err1 = capsys.readouterr().err
        assert image(["pull", f"{px.host}/{repo_b}:v1"], store) == 0
        err2 = capsys.readouterr().err
        base = json.loads(Store(store).read_blob(rec_of(store, f"{px.host}/{repo_a}:v1")["manifest"]))
        base_layer = base["layers"][0]["digest"]
        assert len(px.gets(f"/blobs/{base_layer}")) == 1
        assert image(["pull", "-q", f"{px.host}/{repo_a}:v1"], store) == 0
        assert len(px.gets(f"/blobs/{base_layer}")) == 1
        # Accept lists every manifest type onggi reads.
        acc = px.gets("/manifests/")[0]["headers"]["Accept"]
        for t in ("oci.image.manifest.v1", "oci.image.index.v1", "manifest.v2+json", "manifest.list.v2+json"):
            assert t in acc
    assert f"Copying {base_layer[7:19]}" in err1 and "Pulled " in err1
    assert f"Blob {base_layer[7:19]}: already exists" in err2


def test_transient_errors_are_retried(registry: Any, work: Path, store: Path) -> None:
    repo, _ = push(registry, work)
    with Proxy(registry.host) as px:
        px.fail["/blobs/"] = 2
        px.fail["/manifests/"] = 1
        assert image(["pull", "-q", f"{px.host}/{repo}:v1"], store) == 0
        px.fail["/manifests/"] = 100
        with pytest.raises(OnggiError, match="HTTP 503 \\(after 4 retries\\)"):
            image(["pull", "-q", f"{px.host}/{repo}:v2"], store)


def test_partial_download_resumes_with_range(registry: Any, work: Path, store: Path) -> None:
    repo, digest = push(registry, work, entries=[E("big", data=os.urandom(300000))])
    man = json.loads(registry.blob_data_path(repo, digest).read_bytes())
    layer = man["layers"][1]
    data = registry.blob_data_path(repo, layer["digest"]).read_bytes()
    s = Store(store).init()
    (s.tmp / f"{layer['digest'][7:]}.partial").write_bytes(data[:100000])
    with Proxy(registry.host) as px:
        assert image(["pull", "-q", f"{px.host}/{repo}:v1"], store) == 0
        got = px.gets(f"/blobs/{layer['digest']}")
        assert got[-1]["headers"].get("Range") == "bytes=100000-"
    assert s.read_blob(layer["digest"]) == data
    # A partial that does not add up is thrown away and fetched again whole, not trusted.
    repo2, digest2 = push(registry, work, entries=[E("big", data=os.urandom(300000))])
    man2 = json.loads(registry.blob_data_path(repo2, digest2).read_bytes())
    l2 = man2["layers"][1]["digest"]
    data2 = registry.blob_data_path(repo2, l2).read_bytes()
    (s.tmp / f"{l2[7:]}.partial").write_bytes(b"\0" * 1000)
    with Proxy(registry.host) as px:
        assert image(["pull", "-q", f"{px.host}/{repo2}:v1"], store) == 0
        ranges = [e["headers"].get("Range") for e in px.gets(f"/blobs/{l2}")]
        assert ranges == ["bytes=1000-", None]
    assert s.read_blob(l2) == data2
    assert not (s.tmp / f"{l2[7:]}.partial").exists()
    # A complete partial (the dead pull had it all) is verified without asking again.
    repo3, digest3 = push(registry, work, entries=[E("big", data=os.urandom(300000))])
    l3 = json.loads(registry.blob_data_path(repo3, digest3).read_bytes())["layers"][1]["digest"]
    (s.tmp / f"{l3[7:]}.partial").write_bytes(registry.blob_data_path(repo3, l3).read_bytes())
    with Proxy(registry.host) as px:
        assert image(["pull", "-q", f"{px.host}/{repo3}:v1"], store) == 0
        assert px.gets(f"/blobs/{l3}") == []


def _pull_proc(ref: str, store: Path) -> subprocess.Popen[bytes]:
    code = f"from runtime.image.cli import main; raise SystemExit(main(['pull','-q','{ref}'], store='{store}'))"
    return subprocess.Popen([PY, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_concurrent_pulls_of_one_image(registry: Any, work: Path, store: Path) -> None:
    repo, digest = push(registry, work, entries=[E("big", data=os.urandom(2 << 20))])
    ref = f"{registry.host}/{repo}:v1"
    procs = [_pull_proc(ref, store) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.decode().strip() == digest
    s = Store(store)
    assert list(s.tmp.iterdir()) == []
    for b in s.blobs.iterdir():
        assert "sha256:" + __import__("hashlib").sha256(b.read_bytes()).hexdigest() == "sha256:" + b.name


def test_sigkill_mid_pull_leaves_store_consistent(registry: Any, work: Path, store: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.image.registry as regmod

    monkeypatch.setattr(regmod, "TIMEOUT", 5.0)  # a stalled exchange is retried, not waited on
    repo, digest = push(registry, work, entries=[E("big", data=os.urandom(3 << 20))])
    big = json.loads(registry.blob_data_path(repo, digest).read_bytes())["layers"][1]["digest"]
    with Proxy(registry.host) as px:
        px.throttle[big] = 0.02
        ref = f"{px.host}/{repo}:v1"
        p = _pull_proc(ref, store)
        s = Store(store)
        part = s.tmp / f"{big[7:]}.partial"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 200000):
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        have = part.stat().st_size
        assert 200000 < have < 3 << 20
        assert s.read_index()["images"] == {}, "no image is recorded before all its blobs are in"
        for b in s.blobs.iterdir():
            assert __import__("hashlib").sha256(b.read_bytes()).hexdigest() == b.name
        px.throttle.clear()
        assert image(["pull", "-q", ref], store) == 0
        ranges = [e["headers"].get("Range") for e in px.gets(f"/blobs/{big}")]
        assert ranges[-1] is not None and int(ranges[-1][6:-1]) >= have, ranges
    assert rec_of(store, ref)["digest"] == digest


def test_manifest_without_media_type(registry: Any, work: Path, store: Path) -> None:
    lay = work / "nomt"
    w = imagefix.OCIWriter(lay)
    d = w.image([(imagefix.tar_bytes(imagefix.busybox_entries()), "gzip")], imagefix.image_config(["sh"]))
    man = json.loads((lay / "blobs" / "sha256" / d["digest"][7:]).read_bytes())
    del man["mediaType"]
    w.tag(w.blob(json.dumps(man).encode(), imagefix.OCI_MANIFEST), "v1")
    imagefix.push_layout(lay, registry.host, "test/nomt", "v1")
    assert image(["pull", "-q", f"{registry.host}/test/nomt:v1"], store) == 0


def test_unpack_pulls_first_and_reports_progress(registry: Any, work: Path, store: Path, capsys: Any) -> None:
    repo, _ = push(registry, work)
    ref = f"{registry.host}/{repo}:v1"
    assert image(["image", "unpack", ref, str(work / "b")], store) == 0
    err = capsys.readouterr().err
    assert "Copying " in err and f"Pulled {ref}" in err
    assert image(["image", "unpack", "-q", ref, str(work / "b2")], store) == 0
    assert capsys.readouterr().err == ""


@pytest.fixture
def tls_registry(work: Path) -> Any:
    if not os.access("/usr/bin/openssl", os.X_OK):
        pytest.fail("/usr/bin/openssl missing: install the Debian package openssl")
    crt, key = work / "reg.crt", work / "reg.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    reg = imagefix.LocalRegistry(work / "tlsreg", tls=(str(crt), str(key))).start()
    yield reg
    reg.stop()


def test_tls_registry_and_flags(tls_registry: Any, registry: Any, work: Path, store: Path) -> None:
    repo, digest = push_tls(tls_registry, work)
    ref = f"{tls_registry.host}/{repo}:v1"
    # A loopback registry is an insecure one by default, as in Docker: HTTPS, unverified.
    assert image(["pull", "-q", ref], store) == 0
    assert rec_of(store, ref)["digest"] == digest
    # Asking for verification: the self-signed certificate is refused, at once, clearly.
    with pytest.raises(OnggiError, match="TLS certificate not trusted .*use --tls-verify=false"):
        image(["pull", "-q", "--tls-verify=true", ref], work / "s2")
    assert image(["pull", "-q", "--tls-verify=false", ref], work / "s3") == 0
    # Plain HTTP to a TLS registry fails with its reason; TLS to a plain one needs a flag.
    with pytest.raises(OnggiError, match="HTTP 400: .*Client sent an HTTP request to an HTTPS server"):
        image(["pull", "-q", "--plain-http", ref], work / "s4")
    plain_repo, _ = push(registry, work)
    with pytest.raises(OnggiError, match="speaks plain HTTP; use --plain-http or --tls-verify=false"):
        image(["pull", "-q", "--tls-verify=true", f"{registry.host}/{plain_repo}:v1"], work / "s5")
    assert image(["pull", "-q", "--plain-http", f"{registry.host}/{plain_repo}:v1"], work / "s5") == 0


def push_tls(reg: Any, work: Path) -> tuple[str, str]:
    """Push through skopeo (our push helper speaks plain HTTP only)."""
    lay = work / "tlslay"
    w = imagefix.OCIWriter(lay)
    w.tag(w.image([(imagefix.tar_bytes(imagefix.busybox_entries()), "gzip")], imagefix.image_config()), "v1")
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", f"oci:{lay}:v1",
                    f"docker://{reg.host}/test/tls:v1"], check=True, capture_output=True)
    import hashlib

    idx = json.loads((lay / "index.json").read_text())
    man = (lay / "blobs" / "sha256" / idx["manifests"][0]["digest"][7:]).read_bytes()
    return "test/tls", "sha256:" + hashlib.sha256(man).hexdigest()


def test_layers_download_in_parallel(registry: Any, work: Path, store: Path) -> None:
    lay = work / "par"
    w = imagefix.OCIWriter(lay)
    layers = [(imagefix.tar_bytes([E(f"big{i}", data=os.urandom(600000))]), "none") for i in range(3)]
    w.tag(w.image(layers, imagefix.image_config()), "v1")
    imagefix.push_layout(lay, registry.host, "test/par", "v1")
    with Proxy(registry.host) as px:
        px.throttle["/blobs/"] = 0.02
        assert image(["pull", "-q", f"{px.host}/test/par:v1"], store) == 0
        time.sleep(0.3)  # let the proxy's handlers note their end
        big = [e for e in px.gets("/blobs/") if (e["end"] or time.monotonic()) - e["start"] > 0.1]
        assert len(big) == 3
        overlaps = sum(1 for a in big for b in big if a is not b and a["start"] < b["end"] and b["start"] < a["end"])
        assert overlaps >= 2, "layer downloads ran one after another"


def test_platform_variant_is_matched(registry: Any, work: Path, store: Path) -> None:
    lay = work / "variants"
    w = imagefix.OCIWriter(lay)
    base = imagefix.tar_bytes(imagefix.busybox_entries())
    descs = []
    for v in ("v6", "v7"):
        d = w.image([(base, "gzip"), (imagefix.tar_bytes([E("variant", data=v.encode())]), "gzip")],
                    imagefix.image_config(arch="arm"))
        d["platform"]["variant"] = v
        descs.append(d)
    w.tag(w.multi(descs), "v1")
    imagefix.push_layout(lay, registry.host, "test/variants", "v1")
    ref = f"{registry.host}/test/variants:v1"
    for v in ("v7", "v6"):
        s = work / f"s-{v}"
        assert image(["pull", "-q", "--platform", f"linux/arm/{v}", ref], s) == 0
        assert image(["image", "unpack", "-q", ref, str(work / f"b-{v}")], s) == 0
        assert (work / f"b-{v}" / "rootfs" / "variant").read_text() == v
    with pytest.raises(OnggiError, match="no manifest for platform linux/arm/v5 .has: linux/arm/v6, linux/arm/v7."):
        image(["pull", "-q", "--platform", "linux/arm/v5", ref], work / "s-v5")
