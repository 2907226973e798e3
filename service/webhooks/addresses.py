"""Where a webhook may send (server-side request forgery): ``http`` and ``https`` URLs only,
and unless WEBHOOK_ALLOW_PRIVATE, never to an address that is not globally routable: loopback,
private, link-local (the cloud metadata address 169.254.169.254 among them), multicast,
unspecified, shared, reserved, or IPv4-mapped IPv6. Checked when a webhook is created and again
before each attempt; the attempt then connects to the address checked, with no second lookup
that DNS could answer differently.
"""

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

SCHEMES = {"http": 80, "https": 443}
# Resolvers take (host, port) and return addresses, as the first items of getaddrinfo's tuples'
# sockaddr: tests stub this.
Resolver = Callable[[str, int], list[str]]


class AddressRefused(Exception):
    """The URL may not be sent to; the message says why."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise AddressRefused(f"{host} does not resolve: {error.strerror}") from None
    return [sockaddr[0] for *_rest, sockaddr in found]


@dataclass(frozen=True)
class Target:
    """A URL checked: connect to ``address``:``port`` and speak to ``host`` (Host header, TLS
    name)."""

    scheme: str
    host: str
    port: int
    address: str
    path: str


def split_url(url: str) -> SplitResult:
    """``url`` split, once its form is one we send to."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as error:
        raise AddressRefused(f"not a valid URL: {error}") from None
    if parts.scheme not in SCHEMES:
        raise AddressRefused("only http and https URLs are allowed")
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    if parts.username or parts.password:
        raise AddressRefused("the URL may not carry a user name or password")
    return parts


def address_problem(address: str) -> str | None:
    """Why ``address`` is not one to send to, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"{address} is an IPv4-mapped IPv6 address"
    if ip.is_multicast or not ip.is_global:
        return f"{address} is a loopback, private, link-local or otherwise internal address"
    return None


def check_url(url: str, allow_private: bool, resolve: Resolver | None = None) -> Target:
    """The address to send ``url``'s requests to, once every address its host resolves to is
    allowed; ``AddressRefused`` otherwise. ``resolve``: ``system_resolver`` (looked up at each
    call, so that tests can stub it)."""
    parts = split_url(url)
    port = parts.port or SCHEMES[parts.scheme]
    addresses = (resolve or system_resolver)(parts.hostname, port)
    if not addresses:
        raise AddressRefused(f"{parts.hostname} resolves to no address")
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise AddressRefused(f"{parts.hostname}: {problem}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, addresses[0], path)
