"""Config: the schema (pydantic) and loading. Nothing past this package sees pydantic."""

from notifier.config.load import (
    Config,
    calendar_files,
    expand_env,
    load_calendar,
    load_config,
    merge_calendars,
    parse_calendar,
)
from notifier.config.locate import locate_line
from notifier.config.schema import (
    CalendarFile,
    ConfigModel,
    DeliverySection,
    FeedSection,
    NotifierSection,
    RuleModel,
    SmtpSection,
    SubscriberSection,
    subscriber_hash,
)
from notifier.core.durations import format_duration, parse_duration

__all__ = [
    "CalendarFile",
    "Config",
    "ConfigModel",
    "DeliverySection",
    "FeedSection",
    "NotifierSection",
    "RuleModel",
    "SmtpSection",
    "SubscriberSection",
    "calendar_files",
    "expand_env",
    "format_duration",
    "load_calendar",
    "load_config",
    "locate_line",
    "merge_calendars",
    "parse_calendar",
    "parse_duration",
    "subscriber_hash",
]
