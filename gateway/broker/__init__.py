"""The broker: mosquitto's configuration, accounts and ACL, generated from the registry."""
