"""Broker URLs: one parser, one masker, for connecting and for every line that shows a URL.

``amqp[s]://user:password@host:port/vhost?options`` as operators write them, not only as RFC 3986 allows: a
password may hold ``/``, ``#``, ``?``, ``:`` or ``@`` unescaped (the user information ends at the last ``@``),
or be percent-encoded. A raw ``@`` elsewhere (in a vhost or an option) must be written ``%40``. IPv6 hosts keep
their brackets. Options that carry secrets (``?password=``) are masked like the password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode

from stepflow_tui.broker.cluster import split_urls

#: Schemes `connect` opens.
SCHEMES = ("memory", "amqp", "amqps")
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
MASK = "***"
#: Query options whose value is a secret (compared lower-case, ``-`` and ``_`` ignored).
SECRET_OPTIONS = frozenset({"password", "passwd", "pass", "pwd", "secret", "token", "apikey", "accesstoken",
                            "authorization", "auth", "credentials", "keypassword", "keypass"})

_HOST = re.compile(r"^(\[[0-9A-Za-z:.%]*\]|[^\[\]:/?#]*)(?::(.*))?$")


class InvalidBrokerURL(ValueError):
    """A broker URL that cannot be used; the message names what is wrong and shows the URL masked."""


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed broker URL. ``host`` keeps IPv6 brackets; ``vhost`` is decoded ("/" when none is given)."""

    scheme: str
    host: str = ""
    port: int | None = None
    vhost: str = "/"
    username: str | None = None
    password: str | None = None
    options: list[tuple[str, str]] = field(default_factory=list)
    path: str = ""  # as written (``/``, ``/%2F``, ``/vhost`` or nothing), for display

    @property
    def effective_port(self) -> int | None:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)

    def identity(self) -> str:
        """Which broker and vhost, without credentials or options: ``amqp://host:5672/vhost``."""
        if self.scheme == "memory":
            return f"memory://{self.host}"
        return f"{self.scheme}://{self.host}:{self.effective_port}/{quote(self.vhost, safe='')}"

    def masked(self) -> str:
        """The URL to show: the password and secret options replaced by ``***``."""
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="") + (f":{MASK}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        options = [(k, MASK if is_secret_option(k) else v) for k, v in self.options]
        query = "?" + urlencode(options, safe="/*") if options else ""
        return f"{self.scheme}://{user}{self.host}{port}{self.path}{query}"

    def url(self) -> str:
        """The full URL (password included) in strict form: every part percent-encoded."""
        query = "?" + urlencode(self.options, safe="/") if self.options else ""
        return self.for_pika() + query

    def for_pika(self) -> str:
        """The URL in the strict form pika parses (every part percent-encoded), without ``options``."""
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="") + ":" + quote(self.password or "", safe="") + "@"
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{user}{self.host}{port}/{quote(self.vhost, safe='')}"


def is_secret_option(name: str) -> bool:
    """Whether a URL option's value is a secret (``password``, ``token``, ...)."""
    return name.lower().replace("-", "").replace("_", "") in SECRET_OPTIONS


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``url``; raises `InvalidBrokerURL` (the message shows the URL masked) when it cannot be used."""
    address = _parse(url)
    if address.scheme not in SCHEMES:
        raise InvalidBrokerURL(f"unsupported broker URL {address.masked()!r}: use memory:// or "
                               "amqp://user:password@host:5672/vhost")
    return address


def _parse(url: str) -> BrokerAddress:
    """Parse any ``scheme://...`` URL the way `parse_broker_url` does, without checking the scheme."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise InvalidBrokerURL(f"{_mask_unparsed(url)!r} is not a URL: use memory:// or "
                               "amqp://user:password@host:5672/vhost")
    username = password = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user), (unquote(secret) if colon else None)
    hostport, path, query = _split_location(rest)
    match = _HOST.match(hostport)
    if match is None:
        raise InvalidBrokerURL(f"broker URL {_mask_unparsed(url)!r}: cannot read the host {hostport!r}")
    host, port_text = match.group(1), match.group(2)
    port = None
    if port_text is not None and port_text != "":
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InvalidBrokerURL(f"broker URL {_mask_unparsed(url)!r}: the port {port_text!r} is not a number "
                                   "from 1 to 65535")
        port = int(port_text)
    if scheme in DEFAULT_PORTS and not host:
        raise InvalidBrokerURL(f"broker URL {_mask_unparsed(url)!r} names no host")
    vhost = unquote(path[1:]) if len(path) > 1 else "/"
    return BrokerAddress(scheme=scheme, host=host, port=port, vhost=vhost, username=username,
                         password=password, options=parse_qsl(query, keep_blank_values=True), path=path)


def _split_location(rest: str) -> tuple[str, str, str]:
    """``host:port/path?query#fragment`` -> (host:port, /path, query); the fragment is dropped."""
    rest = rest.partition("#")[0]
    location, _, query = rest.partition("?")
    slash = location.find("/")
    if slash < 0:
        return location, "", query
    return location[:slash], location[slash:], query


def mask_url(url: str) -> str:
    """``amqp://guest:guest@host:5672/vh`` -> ``amqp://guest:***@host:5672/vh``: never print a password (each
    node's, for a cluster's comma-separated URLs)."""
    nodes = split_urls(url)
    if len(nodes) > 1:
        return ",".join(mask_url(node) for node in nodes)
    try:
        return _parse(url).masked()
    except InvalidBrokerURL:
        return _mask_unparsed(url)


def _mask_unparsed(url: str) -> str:
    """A URL that cannot be parsed, masked all the same: everything up to its last ``@`` and every option
    value hidden."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = MASK + "@" + rest.rpartition("@")[2]
    rest = re.sub(r"([?&][^=&#]*=)[^&#]*", lambda m: m.group(1) + MASK, rest)
    return f"{scheme}{sep}{rest}" if sep else MASK
