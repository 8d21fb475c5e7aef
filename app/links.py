"""The shareable link's base address, taken from request headers only when it is a plain http(s) host.

A proxy's ``X-Forwarded-Host`` / ``X-Forwarded-Proto`` (or a client's own ``Host``) are request input: a link
is built from them only when the scheme is ``http`` or ``https`` and the host is a DNS name, an IPv4 address or a
bracketed IPv6 address with an optional port.  Anything else gives the relative link ``?query``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_MAX_HOST = 253


def valid_host(host: str) -> bool:
    """``name[:port]``, ``a.b.c.d[:port]`` or ``[v6][:port]`` with nothing else (no user, path, spaces)."""
    if not isinstance(host, str) or not host or len(host) > _MAX_HOST + 8:
        return False
    if host.startswith("["):
        addr, sep, rest = host[1:].partition("]")
        if not sep:
            return False
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            return False
        return rest == "" or (_port(rest[1:]) and rest.startswith(":"))
    name, sep, port = host.rpartition(":") if ":" in host else (host, "", "")
    if sep and not _port(port):
        return False
    name = name.rstrip(".") if name.endswith(".") and len(name) > 1 else name
    if not name or len(name) > _MAX_HOST:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def _port(p: str) -> bool:
    return p.isdigit() and p.isascii() and 0 < int(p) < 65536


def first_value(v: str | None) -> str:
    """A forwarded header may list several proxies (``a, b``): the first, stripped."""
    return (v or "").split(",")[0].strip()


def share_link(headers: Mapping[str, str], url_scheme: str | None, query: str) -> str:
    """``scheme://host/?query`` from the headers when both are valid, else ``?query``."""
    host = first_value(headers.get("x-forwarded-host")) or first_value(headers.get("host"))
    proto = (first_value(headers.get("x-forwarded-proto")) or url_scheme or "http").lower()
    if proto in ("http", "https") and valid_host(host):
        return f"{proto}://{host}/?{query}"
    return "?" + query

