"""systemd's manager over D-Bus, for the systemd cgroup driver: StartTransientUnit (waiting
for the job's JobRemoved signal), SetUnitProperties, StopUnit, ResetFailedUnit, Version.

Through jeepney (pure Python, no dependencies). Only runtime.cgroups.systemd imports this,
and only when it has to talk to systemd: plain create and the hot path never load jeepney.

The system bus first ($DBUS_SYSTEM_BUS_ADDRESS or /run/dbus/system_bus_socket); as root,
where the bus daemon is not there, systemd's own socket /run/systemd/private (runc does the
same). Every call waits at most TIMEOUT seconds.
"""

from __future__ import annotations

import os
from collections import deque

from jeepney import DBusAddress, MatchRule, MessageType, Properties, message_bus, new_method_call
from jeepney.io.blocking import DBusConnection, DBusConnectionBase, Proxy, open_dbus_connection
from jeepney.io.common import MessageFilters
from jeepney.low_level import HeaderFields
from jeepney.wrappers import DBusErrorResponse

from runtime.cgroups.files import CgroupError

TIMEOUT = 30.0
PRIVATE = "unix:path=/run/systemd/private"
MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                      interface="org.freedesktop.systemd1.Manager")
JOB_REMOVED = MatchRule(type="signal", interface="org.freedesktop.systemd1.Manager",
                        member="JobRemoved")
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
UNIT_EXISTS = "org.freedesktop.systemd1.UnitExists"


class SystemdError(CgroupError):
    """A D-Bus error reply: `name` is its error name (org.freedesktop.systemd1.NoSuchUnit)."""

    def __init__(self, msg: str, name: str = "") -> None:
        super().__init__(msg)
        self.name = name


class _Direct(DBusConnection):
    """A peer-to-peer connection to systemd itself: no bus, so no Hello and no AddMatch
    (systemd sends the job signals to the client that made the job)."""

    def __init__(self, sock) -> None:
        DBusConnectionBase.__init__(self, sock)
        self._filters = MessageFilters()


def direct(address: str = PRIVATE) -> DBusConnection:
    """A connection to systemd's own socket, without the bus daemon. systemd 252 at times
    drops the first message that follows the authentication there (seen in the v2 guest,
    about one connection in four): a Ping is repeated until one is answered."""
    from jeepney.bus import get_bus
    from jeepney.io.blocking import prep_socket

    conn = _Direct(prep_socket(get_bus(address), timeout=TIMEOUT))
    ping = new_method_call(DBusAddress("/org/freedesktop/systemd1",
                                       bus_name="org.freedesktop.systemd1",
                                       interface="org.freedesktop.DBus.Peer"), "Ping")
    for _ in range(15):
        try:
            conn.send_and_get_reply(ping, timeout=2.0)
            return conn
        except TimeoutError:
            continue
        except BaseException:
            conn.close()
            raise
    conn.close()
    raise TimeoutError(f"systemd did not answer on {address}")


def connect() -> DBusConnection:
    """The system bus, or systemd's private socket (root only)."""
    try:
        return open_dbus_connection(bus="SYSTEM", auth_timeout=TIMEOUT)
    except (OSError, TimeoutError, ValueError, RuntimeError) as e:
        first = e
    if os.geteuid() == 0:
        try:
            return direct()
        except (OSError, TimeoutError, ValueError, RuntimeError):
            pass
    why = getattr(first, "strerror", None) or str(first) or type(first).__name__
    raise CgroupError(f"--systemd-cgroup: failed to connect to systemd over D-Bus (is dbus "
                      f"running? /run/dbus/system_bus_socket, /run/systemd/private): "
                      f"{why.lower()}")


class Systemd:
    """One connection to systemd's manager object."""

    def __init__(self, conn: DBusConnection | None = None) -> None:
        self.conn = conn or connect()
        self._matching = False

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, sig: str, args: tuple):
        msg = new_method_call(MANAGER, method, sig, args)
        try:
            reply = self.conn.send_and_get_reply(msg, timeout=TIMEOUT)
        except TimeoutError:
            raise SystemdError(f"systemd did not answer {method} in {TIMEOUT:.0f} s") from None
        except OSError as e:
            raise SystemdError(f"D-Bus {method}: {e.strerror or e}") from None
        if reply.header.message_type == MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else name
            raise SystemdError(text, name)
        return reply.body

    def version(self) -> int:
        """systemd's version number ("252.22-1~deb12u1" -> 252); -1 when unknown."""
        try:
            reply = self.conn.send_and_get_reply(Properties(MANAGER).get("Version"),
                                                 timeout=TIMEOUT)
            text = str(reply.body[0][1]).lstrip('"v')
        except (OSError, TimeoutError, IndexError, TypeError):
            return -1
        digits = ""
        for ch in text:
            if not ch.isdigit():
                break
            digits += ch
        return int(digits) if digits else -1

    def _watch_jobs(self) -> None:
        if not self._matching and not isinstance(self.conn, _Direct):
            try:
                Proxy(message_bus, self.conn, timeout=TIMEOUT).AddMatch(JOB_REMOVED)
            except (DBusErrorResponse, OSError, TimeoutError) as e:
                raise SystemdError(f"D-Bus AddMatch for systemd's JobRemoved: {e}") from None
            self._matching = True

    def _job(self, method: str, sig: str, args: tuple) -> str:
        """Call a job method and wait for its job's JobRemoved; returns its result
        ("done", "failed", "canceled", ...)."""
        self._watch_jobs()
        with self.conn.filter(JOB_REMOVED, queue=deque()) as jobs:
            (job,) = self.call(method, sig, args)
            while True:
                try:
                    sig_msg = self.conn.recv_until_filtered(jobs, timeout=TIMEOUT)
                except TimeoutError:
                    raise SystemdError(f"timed out after {TIMEOUT:.0f} s waiting for "
                                       f"systemd's {method} job {job}") from None
                _id, path, _unit, result = sig_msg.body
                if path == job:
                    return result

    def start_unit(self, unit: str, props: list) -> None:
        """StartTransientUnit(unit, "replace", props) and its job, as runc's startUnit:
        an existing (failed) unit of that name is reset and the start tried once more."""
        for again in (True, False):
            try:
                result = self._job("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                   (unit, "replace", props, []))
            except SystemdError as e:
                if e.name == UNIT_EXISTS and again:
                    self.reset_failed(unit)
                    continue
                if e.name == UNIT_EXISTS:
                    raise SystemdError(f"unit {unit} already exists", e.name) from None
                raise SystemdError(f"unable to start unit {unit}: {e}", e.name) from None
            if result != "done":
                self.reset_failed(unit)
                raise SystemdError(f"error creating systemd unit `{unit}`: got `{result}`")
            return

    def stop_unit(self, unit: str) -> str:
        """StopUnit and its job; a unit that is gone already is fine. Then ResetFailedUnit,
        so that nothing of it stays listed. Returns the job's result ("" when none)."""
        result = ""
        try:
            result = self._job("StopUnit", "ss", (unit, "replace"))
        except SystemdError as e:
            if e.name != NO_SUCH_UNIT:
                raise
        self.reset_failed(unit)
        return result

    def reset_failed(self, unit: str) -> None:
        try:
            self.call("ResetFailedUnit", "s", (unit,))
        except SystemdError:
            pass  # not failed, or not loaded

    def set_properties(self, unit: str, props: list) -> None:
        """SetUnitProperties(unit, runtime=true, props): gone at reboot, as runc's."""
        if props:
            self.call("SetUnitProperties", "sba(sv)", (unit, True, props))
