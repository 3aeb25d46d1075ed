"""RFC 3161 time-stamping: the gateway's own authority, a client for another, an HTTP front."""
