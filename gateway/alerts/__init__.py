"""Alerts: the badge-signed alert, the live channel to the console, and webhooks."""
