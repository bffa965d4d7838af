"""RFC 8058 one-click unsubscribe: unforgeable links and what a click does.

The link is ``<public_url>/unsubscribe/<subscriber>/<token>``; the token is an HMAC of
the subscriber and the address under a secret kept in the state store (or
``[notifier] unsubscribe_secret``), so nobody can unsubscribe someone else. A mail
client's one-click POST carries no cookies and must not be redirected (RFC 8058 §3.2);
a GET (a person, or a link scanner) only shows a confirmation button.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime

from notifier.config import Config
from notifier.store import Store

log = logging.getLogger("notifier.delivery.unsubscribe")


def unsubscribe_token(secret: str, subscriber_id: str, target: str) -> str:
    """An unforgeable token for one address of one subscriber."""
    mac = hmac.new(secret.encode(), f"{subscriber_id}\x1f{target}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


async def unsubscribe_secret(config: Config, store: Store) -> str:
    return (
        config.model.notifier.unsubscribe_secret or await store.get_meta("unsubscribe_secret") or ""
    )


def target_for(config: Config, secret: str, subscriber_id: str, token: str) -> str | None:
    """The address a token was made for, or None when it matches none."""
    sub = next((s for s in config.subscribers if s.id == subscriber_id), None)
    if sub is None or not secret:
        return None
    targets = [*sub.email, *([sub.webhook] if sub.webhook else [])]
    for target in targets:
        if hmac.compare_digest(unsubscribe_token(secret, sub.id, target), token):
            return target
    return None


async def apply_unsubscribe(
    config: Config, store: Store, subscriber_id: str, token: str, *, now: datetime
) -> str | None:
    """Unsubscribe the address behind a valid token; returns it (None: invalid token)."""
    secret = await unsubscribe_secret(config, store)
    target = target_for(config, secret, subscriber_id, token)
    if target is None:
        return None
    dropped = await store.unsubscribe(subscriber_id, target, now=now)
    log.info("unsubscribed %s from %s (%d queued alerts dropped)", target, subscriber_id, dropped)
    return target
