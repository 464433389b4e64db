"""Network guard of the test suite: only loopback and unix sockets may connect (installed by tests/conftest.py).

A blocked TCP connect or host-name lookup raises ``RuntimeError`` (loud: the code under test cannot mistake it
for a transient ``OSError`` and retry or swallow it). A UDP connect to a non-loopback address raises
``OSError(ENETUNREACH)`` as on an offline machine: it sends nothing, and libraries such as Ray use it to find the
outward interface and handle an unreachable network.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}


def is_local_host(host: object) -> bool:
    """True for loopback addresses and local names (``127.0.0.0/8``, ``::1``, ``localhost``, ``""``)."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    text = str(host).strip("[]").split("%")[0].lower()
    if text in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    """Monkey-patches :mod:`socket` so that only loopback and unix sockets can connect.

    ``install`` / ``uninstall`` are idempotent; ``attempts`` lists every blocked target.
    """

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._saved: dict[str, Any] = {}

    @property
    def active(self) -> bool:
        """True while the guard's functions are the ones :mod:`socket` uses."""
        return bool(self._saved) and socket.socket.connect is not self._saved["connect"]

    def _blocked(self, what: str) -> RuntimeError:
        self.attempts.append(what)
        return RuntimeError(f"test tried to reach the network: {what} (tests must stay offline; see tests/conftest.py)")

    def _check(self, sock: socket.socket, address: object) -> None:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if is_local_host(host):
            return
        if sock.type == socket.SOCK_DGRAM:
            # A UDP connect sends nothing; libraries (Ray) use one to find the outward interface and treat an
            # unreachable network as "offline". Behave like an offline machine instead of failing them.
            raise OSError(101, f"network is unreachable (offline tests): {address!r}")
        raise self._blocked(f"connect to {address!r}")

    def install(self) -> None:
        """Patch ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo``."""
        if self._saved:
            return
        self._saved = {"connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex,
                       "getaddrinfo": socket.getaddrinfo}
        real_connect, real_connect_ex = self._saved["connect"], self._saved["connect_ex"]
        real_getaddrinfo = self._saved["getaddrinfo"]
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            guard._check(sock, address)
            return real_connect(sock, address)  # type: ignore[no-any-return]

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard._check(sock, address)
            return real_connect_ex(sock, address)  # type: ignore[no-any-return]

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None and not is_local_host(host):
                raise guard._blocked(f"resolve {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo

    def uninstall(self) -> None:
        """Restore the real socket functions."""
        if not self._saved:
            return
        socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._saved["connect_ex"]  # type: ignore[method-assign]
        socket.getaddrinfo = self._saved["getaddrinfo"]
        self._saved = {}


NETWORK_GUARD = NetworkGuard()
