"""Rendering: events -> email parts, Slack text and webhook bodies.

``renderer`` renders through the Jinja2 environment of ``environment``, ``wording`` is
``say`` (the wording macros), ``view`` the flat event view and its labels, ``text`` and
``formatting`` the filters, ``families`` which templates render which events.
"""

from notifier.delivery.render.families import FAMILIES, REQUIRED_TEMPLATES, family_of
from notifier.delivery.render.renderer import (
    WORDING_TEMPLATE,
    EmailTemplate,
    RenderedEmail,
    Renderer,
)
from notifier.delivery.render.text import (
    mrkdwn,
    paragraphs,
    slack_link,
    text_field,
    tidy_text,
    wrap,
)
from notifier.delivery.render.view import (
    COLOURS,
    COUNTRY_NAMES,
    FIELD_LABELS,
    LABELS,
    NEUTRAL_COLOUR,
    alert_view,
    country_name,
    duration_words,
    field_label,
    hts_dotted,
    hts_label,
    origins_label,
)

__all__ = [
    "COLOURS",
    "COUNTRY_NAMES",
    "FAMILIES",
    "FIELD_LABELS",
    "LABELS",
    "NEUTRAL_COLOUR",
    "REQUIRED_TEMPLATES",
    "WORDING_TEMPLATE",
    "EmailTemplate",
    "RenderedEmail",
    "Renderer",
    "alert_view",
    "country_name",
    "duration_words",
    "family_of",
    "field_label",
    "hts_dotted",
    "hts_label",
    "mrkdwn",
    "origins_label",
    "paragraphs",
    "slack_link",
    "text_field",
    "tidy_text",
    "wrap",
]
