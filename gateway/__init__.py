"""The medbadge hospital gateway: enrolment, intake, vault, ledger, console and export."""
