"""Media types onggi reads, and the small helpers that classify them."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

LAYERS = (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_LAYER.replace(".layer.", ".layer.nondistributable."),
    OCI_LAYER_GZIP.replace(".layer.", ".layer.nondistributable."),
    OCI_LAYER_ZSTD.replace(".layer.", ".layer.nondistributable."),
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_FOREIGN,
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
)


def guess_type(obj: dict, fallback: str | None) -> str | None:
    """The manifest's own mediaType, else the descriptor's or Content-Type, else its shape."""
    mt = obj.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if fallback and fallback.split(";")[0].strip() in MANIFESTS + INDEXES:
        return fallback.split(";")[0].strip()
    if "manifests" in obj:
        return OCI_INDEX
    if "layers" in obj and "config" in obj:
        return OCI_MANIFEST
    return fallback
