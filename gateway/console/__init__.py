"""The security console: live alerts, badges, incidents, playback, export and the custody log."""
