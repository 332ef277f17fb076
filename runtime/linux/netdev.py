"""linux.netDevices: host links moved into the container's network namespace (pyroute2,
imported only for a config that has netDevices).

create, in the parent once the init's pid is known and before the prestart hooks (runc's
place), for each device:
  look the link up on the host; note its permanent global addresses (the spec keeps those);
  set it down; move it into /proc/<init>/ns/net under its new name in one RTM_NEWLINK; then
  inside the container: add the addresses back and set it up.
delete: nothing moves a device out (the spec forbids it before deletion). When the network
  namespace dies, the kernel destroys virtual devices (veth, macvlan, ...) and returns
  physical ones to the host under the name they had inside; `give_back` waits for those
  and renames them back to their host name.
"""

from __future__ import annotations

import errno
import os
import time

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runtime.errors import OnggiError, strerror
from runtime.linux import syscalls
from runtime.spec import CLONE_FLAGS, NetDevice

IFA_F_PERMANENT = 0x80
IFF_UP = 0x1
RT_SCOPE_UNIVERSE = 0
RETURN_WAIT = 3.0  # seconds delete waits for the kernel to hand a physical device back


def _why(e: Exception) -> str:
    code = e.code if isinstance(e, NetlinkError) else getattr(e, "errno", None)
    return strerror(code) if code else str(e)


def _in_netns(pid: int) -> IPRoute:
    """An rtnetlink socket inside /proc/<pid>/ns/net: we enter that namespace just for the
    socket() call (a netlink socket stays in the namespace it was made in) and come back."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, CLONE_FLAGS["network"])
            try:
                return IPRoute()
            finally:
                syscalls.setns(own, CLONE_FLAGS["network"])
        finally:
            os.close(target)
    finally:
        os.close(own)


def _addresses(ipr: IPRoute, index: int) -> list[tuple[int, str, int]]:
    """(family, address, prefixlen) of the permanent, global-scope addresses."""
    out = []
    for a in ipr.get_addr(index=index):
        flags = a.get_attr("IFA_FLAGS") or a["flags"]
        if flags & IFA_F_PERMANENT and a["scope"] == RT_SCOPE_UNIVERSE:
            addr = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
            out.append((a["family"], addr, a["prefixlen"]))
    return out


def _kind(link) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""


def move_all(devs: tuple[NetDevice, ...], pid: int, moved: list[dict]) -> None:
    """Move every device into the init's network namespace; appends what delete needs to
    `moved` as it goes, so a failure part-way knows what was moved."""
    with IPRoute() as host:
        inside = _in_netns(pid)
        try:
            nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                for d in devs:
                    _move(host, inside, nsfd, d, moved)
            finally:
                os.close(nsfd)
        finally:
            inside.close()


def _move(host: IPRoute, inside: IPRoute, nsfd: int, d: NetDevice, moved: list[dict]) -> None:
    f = f"linux.netDevices.{d.host}"
    found = host.link_lookup(ifname=d.host)
    if not found:
        raise OnggiError(f"{f}: there is no link named {d.host!r} on the host")
    # The kernel moves first and renames after: a taken name would leave the link moved
    # under its host name. The spec: an error, unless the kernel picks the name ("%d").
    if "%" not in d.name and inside.link_lookup(ifname=d.name):
        raise OnggiError(f"{f}: the container already has a link named {d.name!r}")
    index = found[0]
    link = host.get_links(index)[0]
    record = {"host": d.host, "name": d.name, "kind": _kind(link),
              "address": link.get_attr("IFLA_ADDRESS") or ""}
    addrs = _addresses(host, index)
    was_up = bool(link["flags"] & IFF_UP)
    try:
        host.link("set", index=index, state="down")
        host.link("set", index=index, net_ns_fd=nsfd, ifname=d.name)
    except NetlinkError as e:
        if not host.link_lookup(ifname=d.host):
            moved.append(record)  # it did move: delete (or the failed create) must know
        elif was_up:  # still ours: leave it as we found it
            try:
                host.link("set", index=index, state="up")
            except NetlinkError:
                pass
        why = _why(e)
        if e.code == errno.EEXIST:
            why = f"the container already has a link named {d.name!r}"
        raise OnggiError(f"{f}: moving it into the container's network namespace: {why}") \
            from None
    moved.append(record)
    try:
        new = inside.link_lookup(ifname=d.name) or _by_address(inside, record["address"])
        if not new:
            raise OnggiError(f"{f}: moved, but not found in the container as {d.name!r}")
        record["name"] = inside.get_links(new[0])[0].get_attr("IFLA_IFNAME")  # "%d" expanded
        for family, addr, plen in addrs:
            inside.addr("add", index=new[0], family=family, address=addr, prefixlen=plen)
        inside.link("set", index=new[0], state="up")
    except NetlinkError as e:
        raise OnggiError(f"{f}: setting it up in the container: {_why(e)}") from None


def _by_address(ipr: IPRoute, address: str) -> list[int]:
    if not address:
        return []
    return [link["index"] for link in ipr.get_links() if link.get_attr("IFLA_ADDRESS") == address]


def give_back(moved: list[dict], wait: float = RETURN_WAIT) -> list[str]:
    """After the container's processes are gone: wait for the physical devices the kernel
    returns to the host and give them their host names back. Virtual devices (a `kind`)
    are destroyed with the namespace. Returns warnings for devices that did not come back
    (the namespace is still held, e.g. by a bind mount of it)."""
    physical = [m for m in moved if not m.get("kind")]
    if not physical:
        return []
    warnings = []
    deadline = time.monotonic() + wait
    with IPRoute() as host:
        for m in physical:
            while True:
                index = _find_returned(host, m)
                if index is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if index is None:
                warnings.append(f"linux.netDevices.{m['host']}: not back on the host after "
                                "delete (its network namespace is still in use)")
                continue
            name = host.get_links(index)[0].get_attr("IFLA_IFNAME")
            if name != m["host"]:
                try:
                    host.link("set", index=index, ifname=m["host"])
                except NetlinkError as e:
                    warnings.append(f"linux.netDevices.{m['host']}: back on the host as "
                                    f"{name!r}; renaming it: {_why(e)}")
    return warnings


def _find_returned(host: IPRoute, m: dict) -> int | None:
    if m.get("address"):
        found = _by_address(host, m["address"])
        if found:
            return found[0]
        return None
    found = host.link_lookup(ifname=m["name"]) or host.link_lookup(ifname=m["host"])
    return found[0] if found else None
