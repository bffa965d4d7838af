"""What the delivery log may show of a target (CONTRACT.md, "The delivery log").

Email addresses are shown as they are. A webhook URL that is a secret (every Slack URL;
a webhook whose value came from ``${VAR}``) is shown as scheme and host only,
``https://hooks.slack.com/…``; other URLs without their query string (tokens often ride
there) and never with credentials in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from notifier.core.model import Subscriber

#: Hosts whose webhook URLs are credentials in themselves (the path is the token).
SECRET_HOSTS = frozenset({"hooks.slack.com"})

#: A URL that ``urlsplit`` and ``urlunsplit`` give back unchanged when nothing is masked:
#: lower-case scheme and host, a port without leading zeros, no credentials, query,
#: fragment, whitespace or backslash. A fan-out masks one such URL per webhook
#: subscriber; this check costs a fraction of the split (a test compares the two).
_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+)(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?:/[^?#@\s\\]*)?",
    re.ASCII,
)


def mask_target(target: str, *, secret: bool) -> str:
    """``target`` as the delivery log may show it; ``secret``: the URL itself is one."""
    if "://" not in target:
        return target  # an email address (no authority part: shown as it is)
    plain = _PLAIN_URL.fullmatch(target)
    if plain is not None and int(plain["port"] or 0) <= 65535:
        scheme, host, port = plain.group("scheme", "host", "port")
        if not (secret or host in SECRET_HOSTS):
            return target
        return f"{scheme}://{host}{':' + port if port else ''}/…"
    return split_and_mask(target, secret=secret)


def split_and_mask(target: str, *, secret: bool) -> str:
    """``mask_target`` through ``urlsplit`` (every URL; ``mask_target`` skips the split
    for plain ones)."""
    try:
        parts = urlsplit(target)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparseable URL (a bad port, an odd IPv6 literal)
        return target.split("?", 1)[0] if "://" not in target else "(invalid URL)"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return target  # an email address, or not a URL at all
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if secret or host.lower() in SECRET_HOSTS:
        return f"{parts.scheme}://{netloc}/…"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def shown_target(
    target: str, *, subscriber: Subscriber | None, env_values: Iterable[str] = ()
) -> str:
    """A target as logs, the delivery log and command output may show it: masked to
    scheme and host when it is a secret (every Slack URL, a URL with a value read from
    ``${VAR}`` in it, the URL of a subscriber no longer configured)."""
    secret = (
        subscriber is None
        or subscriber.format == "slack"
        or any(value and value in target for value in env_values)
    )
    return mask_target(target, secret=secret)
