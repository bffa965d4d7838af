"""tariff-notifier: alerts when a tariff that touches your goods changes."""

__version__ = "0.1.0"
