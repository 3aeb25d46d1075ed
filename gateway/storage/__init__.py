"""The gateway's storage: the database, its record stores, and the vault of sealed segments."""
