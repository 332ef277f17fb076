"""The image tool: registry pulls, a content-addressed store, and layers unpacked into bundles.

Nothing here is imported by the runtime verbs; every heavy import lives inside functions.
"""
