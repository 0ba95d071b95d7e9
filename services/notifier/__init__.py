"""Notifier: alerts to recipients, on the webhook channel and in the inbox."""
