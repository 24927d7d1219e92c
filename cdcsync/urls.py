"""The one way a URL we were given (the OpenSearch URL) is shown in a message: scheme, host and port.

A URL may carry a secret in its user info (``https://admin:pa55@host``), its query
(``?api_key=...``), its path or its fragment. Masking those parts one by one fails on the
passwords people choose: an ``@`` in the password (``admin:p@ss@host`` left ``***@ss@host``), a
``/``, ``?`` or ``#`` (a URL parser ends the host there and takes the rest of the password for a
path). So ``origin`` keeps only what is needed to tell which server is meant, read as a person who
typed the URL meant it: user info ends at the *last* ``@`` (a host never holds one), the host and
port end at the first ``/``, ``?`` or ``#`` after it. A part that does not look like a scheme, a
host or a port is not shown (``?``): a port that is no number may be a password missing its ``@``.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}")
# A registered name or IPv4 address (no percent-encoding: nothing to decode into a secret), or an
# IPv6 literal in brackets, possibly with a zone (``%25eth0``).
_HOST = re.compile(r"[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]")
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_PORT = 65535


def origin(url: str) -> str:
    """``url`` as ``scheme://host[:port]``: no user info, path, query or fragment, ever."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", url.strip()
    authority = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    if authority.startswith("["):
        host, bracket, port = authority.partition("]")
        host += bracket
        port = port.removeprefix(":") if port.startswith(":") else ("" if not port else "?")
    else:
        host, _, port = authority.partition(":")
    shown = host if _HOST.fullmatch(host) else "?"
    if _PORT.fullmatch(port) and int(port) <= _MAX_PORT:
        shown += f":{port}"
    if not sep:
        return shown
    return f"{scheme.lower() if _SCHEME.fullmatch(scheme) else '?'}://{shown}"
