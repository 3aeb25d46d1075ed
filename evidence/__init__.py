"""The medbadge trust core: canonical encoding, keys, sealed segments, chains, verifier."""
