"""The medbadge badge: camera, segments, sealing, pre-event ring, alert button and uplink."""
