"""What the delivery log may show of a target (CONTRACT.md, "The delivery log").

Email addresses are shown as they are. A webhook URL that is a secret (every Slack URL;
a webhook whose value came from ``${VAR}``) is shown as scheme and host only,
``https://hooks.slack.com/…``; other URLs without their query string (tokens often ride
there) and never with credentials in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from notifier.core.model import Subscriber

#: Hosts whose webhook URLs are credentials in themselves (the path is the token).
SECRET_HOSTS = frozenset({"hooks.slack.com"})


def mask_target(target: str, *, secret: bool) -> str:
    """``target`` as the delivery log may show it; ``secret``: the URL itself is one."""
    if "://" not in target:
        return target  # an email address (no authority part: shown as it is)
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
