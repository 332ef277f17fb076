"""What a container holds outside its own namespaces and cgroups, and who undoes it:

- host_mounts: without a mount namespace, the rootfs anchor in the host's mount table
  (runtime.linux.hostmounts);
- net_devices: host links moved into its network namespace (runtime.linux.netdev);
- intel_rdt: its resctrl group (runtime.linux.resctrl).

`create` fills a HostResources step by step, so a failed create undoes exactly what it
made; state.json keeps the same fields, and `delete` releases them once the container's
processes are gone. Each module is imported only when its field is set.
"""

from __future__ import annotations

from runtime import log
from runtime.errors import OnggiError


class HostResources:
    def __init__(self, host_mounts: dict | None = None, net_devices: list | None = None,
                 intel_rdt: dict | None = None) -> None:
        self.host_mounts = host_mounts or {}
        self.net_devices = net_devices or []
        self.intel_rdt = intel_rdt or {}

    @classmethod
    def of(cls, st) -> HostResources:
        """From a runtime.state.State."""
        return cls(st.host_mounts, st.net_devices, st.intel_rdt)

    def __bool__(self) -> bool:
        return bool(self.host_mounts or self.net_devices or self.intel_rdt)

    def release(self) -> None:
        """The container's processes are gone (or never ran): unmount, hand devices back,
        remove the resctrl group. Every step is tried; the first error is raised after."""
        first: Exception | None = None
        if self.host_mounts:
            from runtime.linux import hostmounts

            try:
                hostmounts.release(hostmounts.from_state(self.host_mounts))
            except Exception as e:  # noqa: BLE001 - try the other steps too
                first = first or e
        if self.net_devices:
            from runtime.linux import netdev

            try:
                for w in netdev.give_back(self.net_devices):
                    log.warn(w)
            except Exception as e:  # noqa: BLE001
                first = first or e
        if self.intel_rdt:
            from runtime.linux import resctrl

            try:
                resctrl.remove(self.intel_rdt)
            except Exception as e:  # noqa: BLE001
                first = first or e
        if isinstance(first, OnggiError):
            raise first
        if first is not None:
            raise OnggiError(f"releasing the container's host resources: {first}")


def release_for_delete(st, force: bool) -> None:
    """delete's release of state `st`'s host resources. With --force a failure is a
    warning (in --log and on stderr) and the id is freed all the same: what could not be
    released now never will be by a later delete either, which would find it again."""
    try:
        HostResources.of(st).release()
    except OnggiError as e:
        if not force:
            raise
        msg = f"container {st.id}: {e}; freeing its id anyway"
        log.warn(msg)
        import sys

        sys.stderr.write(f"onggi: warning: {msg}\n")
