"""Where the experience servers are: fixed ``host:port`` addresses, every A and
AAAA record of a DNS name (``dns:///name:port``, e.g. a Kubernetes headless
Service), or a callable that lists them (e.g. a Ray farm's directory).

An ``AddressBook`` resolves them to a mapping ``stream key -> host:port``. The
key names a stream for its whole life: a consumer keeps its position under the
key and, when the key's address changes (a restarted actor listening on a new
port), reconnects there and resumes. A DNS record's key is its address.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence

from .server import parse_address

DNS_SCHEME = "dns:///"

# A source lists servers: a list of "host:port" (each its own key) or a mapping key -> "host:port".
AddressSource = Callable[[], Sequence[str] | Mapping[str, str]]


def resolve_dns(target: str) -> list[str]:
    """Every address of ``dns:///name:port`` as ``host:port`` (IPv6 in brackets),
    sorted; an empty list when the name has no records (no pod is ready yet)."""
    if not target.startswith(DNS_SCHEME):
        raise ValueError(f"address: {target!r} does not start with {DNS_SCHEME}")
    host, port = parse_address(target[len(DNS_SCHEME) :])
    if port == 0:
        raise ValueError(f"address: {target!r} needs the servers' port, not 0")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    found = set()
    for family, _, _, _, sockaddr in infos:
        ip = sockaddr[0]
        found.add(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
    return sorted(found)


class AddressBook:
    """The servers named by ``address``: ``"host:port"``, ``"dns:///name:port"``,
    a list of those, or an ``AddressSource``. ``dynamic`` says whether
    ``resolve`` can change its answer (DNS names and sources)."""

    def __init__(self, address: str | Sequence[str] | AddressSource) -> None:
        self._source: AddressSource | None = None
        if callable(address):
            self._source, self._entries = address, []
        else:
            self._entries = [address] if isinstance(address, str) else list(address)
            if not self._entries:
                raise ValueError("address: give at least one server address")
            if len(set(self._entries)) != len(self._entries):
                raise ValueError(f"address: {self._entries} lists a server twice")
            for entry in self._entries:
                if not isinstance(entry, str):
                    raise TypeError(f"address: expected host:port strings, got {entry!r}")
                parse_address(entry.removeprefix(DNS_SCHEME))
        self.dynamic = self._source is not None or any(
            e.startswith(DNS_SCHEME) for e in self._entries
        )

    def resolve(self) -> dict[str, str]:
        """``stream key -> host:port`` of every server now."""
        if self._source is not None:
            listed = self._source()
            found = dict(listed) if isinstance(listed, Mapping) else {a: a for a in listed}
            for key, address in found.items():
                parse_address(address)  # a source's mistake is named, not dialed
                if not isinstance(key, str):
                    raise TypeError(f"address source: keys must be strings, got {key!r}")
            return found
        found = {}
        for entry in self._entries:
            addresses = resolve_dns(entry) if entry.startswith(DNS_SCHEME) else [entry]
            found.update((a, a) for a in addresses)
        return found
