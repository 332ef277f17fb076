"""The image tool: registry pulls, a content-addressed store, and layers unpacked into bundles.

    onggi [--store DIR] image pull REF            registry ref, oci:DIR[:TAG], docker-archive:FILE
    onggi [--store DIR] image ls [--format json]  (alias: onggi images)
    onggi [--store DIR] image rm [--force] REF…   (alias: onggi rmi), then garbage collection
    onggi [--store DIR] image tag SRC DST
    onggi [--store DIR] image inspect REF
    onggi [--store DIR] image unpack REF BUNDLE [--mode copy|overlay]
    onggi [--store DIR] image unmount BUNDLE      undo an overlay bundle

One module per concern: reference (names), registry (distribution API + auth), layout (OCI
layouts, docker-archives), pull (platform choice, parallel blobs), store (CAS, index, locks),
unpack + fsutil (safe layer application), overlay (mounts), bundle (copy/overlay bundles),
convert (image config → config.json), images (ls/tag/rm/gc/inspect), cli.

Nothing here is imported by the runtime verbs; every heavy import lives inside functions.
"""
