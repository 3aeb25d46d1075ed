"""The gateway database's schema for SQLite, as migrations applied in order.

The tables are what the record stores read and write (``gateway.storage``); a second
backend keeps the same tables and columns in its own dialect.
"""

from __future__ import annotations

from collections.abc import Sequence

MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE badges (
        badge_id TEXT PRIMARY KEY,
        wearer TEXT NOT NULL DEFAULT '',
        location TEXT NOT NULL DEFAULT '',
        key_generation INTEGER NOT NULL,
        broker_password_hash TEXT NOT NULL,
        enrolled_at_ns INTEGER NOT NULL,
        revoked_at_ns INTEGER
    );
    CREATE TABLE badge_keys (
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        generation INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        valid_from_ns INTEGER NOT NULL,
        retired_at_ns INTEGER,
        PRIMARY KEY (badge_id, generation)
    );
    CREATE TABLE enrolment_events (
        event_id INTEGER PRIMARY KEY,
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        kind TEXT NOT NULL CHECK (kind IN ('enrolled', 'rotated', 'revoked')),
        at_ns INTEGER NOT NULL,
        operator TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    """
    CREATE TABLE incidents (
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        incident_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        signed_record BLOB NOT NULL,
        record_sha256 BLOB NOT NULL,
        received_wall_ns INTEGER NOT NULL,
        complete_wall_ns INTEGER,
        PRIMARY KEY (badge_id, incident_id)
    );
    CREATE INDEX incidents_by_range ON incidents (badge_id, first_seq, last_seq);
    CREATE TABLE segments (
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        seq INTEGER NOT NULL,
        incident_id TEXT NOT NULL,
        sealed_sha256 BLOB NOT NULL,
        sealed_size INTEGER NOT NULL,
        header BLOB NOT NULL,
        header_sha256 BLOB NOT NULL,
        prev_sha256 BLOB NOT NULL,
        boot INTEGER NOT NULL,
        mono_start_ns INTEGER NOT NULL,
        mono_end_ns INTEGER NOT NULL,
        badge_wall_start_ns INTEGER NOT NULL,
        badge_wall_end_ns INTEGER NOT NULL,
        received_wall_ns INTEGER NOT NULL,
        capture_start_ns INTEGER,
        capture_end_ns INTEGER,
        capture_error_ns INTEGER,
        clock_offset_ns INTEGER,
        clock_samples INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (badge_id, seq)
    );
    CREATE TABLE alerts (
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        incident_id TEXT NOT NULL,
        signed_alert BLOB NOT NULL,
        alert_sha256 BLOB NOT NULL,
        press_boot INTEGER NOT NULL,
        press_mono_ns INTEGER NOT NULL,
        press_wall_ns INTEGER NOT NULL,
        location TEXT NOT NULL,
        received_wall_ns INTEGER NOT NULL,
        PRIMARY KEY (badge_id, incident_id)
    );
    CREATE TABLE badge_state (
        badge_id TEXT PRIMARY KEY REFERENCES badges(badge_id),
        online INTEGER NOT NULL DEFAULT 0,
        status_boot INTEGER,
        status_wall_ns INTEGER,
        boot INTEGER,
        battery_percent INTEGER,
        storage_free_bytes INTEGER,
        ring_bytes INTEGER,
        ring_segments INTEGER,
        pinned_segments INTEGER,
        dropped_frames INTEGER,
        outbox_pending INTEGER,
        recording INTEGER,
        last_heartbeat_wall_ns INTEGER,
        clock_offset_ns INTEGER,
        clock_drift_ppb INTEGER,
        clock_error_ns INTEGER,
        clock_samples INTEGER
    );
    CREATE TABLE clock_samples (
        badge_id TEXT NOT NULL REFERENCES badges(badge_id),
        boot INTEGER NOT NULL,
        mono_ns INTEGER NOT NULL,
        badge_wall_ns INTEGER NOT NULL,
        gateway_wall_ns INTEGER NOT NULL,
        PRIMARY KEY (badge_id, boot, mono_ns)
    );
    """,
    """
    CREATE TABLE ledger_leaves (
        leaf_index INTEGER PRIMARY KEY,
        leaf BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        appended_at_ns INTEGER NOT NULL
    );
    CREATE TABLE checkpoints (
        checkpoint_id INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        note BLOB NOT NULL,
        timestamp_token BLOB,
        created_at_ns INTEGER NOT NULL
    );
    CREATE INDEX checkpoints_by_size ON checkpoints (size, checkpoint_id);
    CREATE TABLE receipts (
        receipt_sha256 BLOB PRIMARY KEY,
        badge_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        key TEXT NOT NULL,
        receipt BLOB NOT NULL,
        ledger_index INTEGER NOT NULL,
        first_sent_ns INTEGER NOT NULL
    );
    CREATE INDEX receipts_by_subject ON receipts (badge_id, subject, key);
    CREATE TABLE custody_entries (
        entry_id INTEGER PRIMARY KEY,
        ledger_index INTEGER NOT NULL UNIQUE,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        justification TEXT NOT NULL,
        at_ns INTEGER NOT NULL
    );
    CREATE INDEX custody_by_subject ON custody_entries (subject, at_ns);
    CREATE INDEX custody_by_actor ON custody_entries (actor, at_ns);
    CREATE INDEX custody_by_action ON custody_entries (action, at_ns);
    CREATE INDEX custody_by_time ON custody_entries (at_ns);
    ALTER TABLE segments ADD COLUMN ledger_index INTEGER;
    ALTER TABLE incidents ADD COLUMN ledger_index INTEGER;
    ALTER TABLE alerts ADD COLUMN ledger_index INTEGER;
    """,
    """
    CREATE TABLE console_users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('officer', 'custodian', 'auditor', 'admin')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at_ns INTEGER NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE console_sessions (
        token_sha256 BLOB PRIMARY KEY,
        username TEXT NOT NULL REFERENCES console_users(username),
        csrf_token TEXT NOT NULL,
        client TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NOT NULL,
        expires_at_ns INTEGER NOT NULL
    );
    CREATE INDEX console_sessions_by_user ON console_sessions (username);
    CREATE TABLE alert_actions (
        action_id INTEGER PRIMARY KEY,
        badge_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('acknowledge', 'resolve')),
        username TEXT NOT NULL,
        at_ns INTEGER NOT NULL,
        ledger_index INTEGER NOT NULL
    );
    CREATE INDEX alert_actions_by_incident ON alert_actions (badge_id, incident_id, action_id);
    CREATE TABLE incident_index (
        badge_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        opened_ns INTEGER NOT NULL,
        location TEXT NOT NULL DEFAULT '',
        wearer TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'acknowledged', 'resolved')),
        legal_hold INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (badge_id, incident_id)
    );
    CREATE INDEX incident_index_by_time ON incident_index (opened_ns, badge_id, incident_id);
    CREATE INDEX incident_index_by_badge
        ON incident_index (badge_id, opened_ns, incident_id);
    CREATE INDEX incident_index_by_wearer
        ON incident_index (wearer, opened_ns, badge_id, incident_id);
    CREATE INDEX incident_index_by_location
        ON incident_index (location, opened_ns, badge_id, incident_id);
    CREATE INDEX incident_index_by_status
        ON incident_index (status, opened_ns, badge_id, incident_id);
    CREATE INDEX incident_index_by_id ON incident_index (incident_id);
    CREATE TABLE incident_index_sync (
        source TEXT PRIMARY KEY CHECK (source IN ('alerts', 'incidents')),
        last_rowid INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE retention_deletions (
        badge_id TEXT NOT NULL,
        incident_id TEXT NOT NULL,
        deleted_at_ns INTEGER NOT NULL,
        actor TEXT NOT NULL,
        segments INTEGER NOT NULL,
        ledger_index INTEGER NOT NULL,
        PRIMARY KEY (badge_id, incident_id)
    );
    """,
    # the incident index follows an explicit arrival order, not SQLite's rowid (decision 1402);
    # its watermarks start again from nothing, and the index catches up once
    """
    ALTER TABLE alerts ADD COLUMN arrival INTEGER;
    UPDATE alerts SET arrival = ranked.number FROM (
        SELECT badge_id, incident_id,
            ROW_NUMBER() OVER (ORDER BY received_wall_ns, badge_id, incident_id) AS number
        FROM alerts
    ) AS ranked WHERE ranked.badge_id = alerts.badge_id AND ranked.incident_id = alerts.incident_id;
    CREATE UNIQUE INDEX alerts_by_arrival ON alerts (arrival);
    ALTER TABLE incidents ADD COLUMN arrival INTEGER;
    UPDATE incidents SET arrival = ranked.number FROM (
        SELECT badge_id, incident_id,
            ROW_NUMBER() OVER (ORDER BY received_wall_ns, badge_id, incident_id) AS number
        FROM incidents
    ) AS ranked
    WHERE ranked.badge_id = incidents.badge_id AND ranked.incident_id = incidents.incident_id;
    CREATE UNIQUE INDEX incidents_by_arrival ON incidents (arrival);
    DELETE FROM incident_index_sync;
    ALTER TABLE incident_index_sync RENAME COLUMN last_rowid TO last_arrival;
    """,
    # badges cut off at the broker for flooding refused messages (decision 1702)
    """
    CREATE TABLE badge_cutoffs (
        badge_id TEXT PRIMARY KEY REFERENCES badges(badge_id),
        cut_off_at_ns INTEGER NOT NULL,
        refusals INTEGER NOT NULL,
        window_ns INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # failed console logins per (name, address), shared by every console process (decision
    # 1760); the second factor: a sealed TOTP secret, the last step used, recovery codes'
    # hashes, and sessions that must set it up before anything else (decision 1761)
    """
    CREATE TABLE console_login_failures (
        username TEXT NOT NULL,
        client TEXT NOT NULL,
        failures INTEGER NOT NULL,
        last_failure_ns INTEGER NOT NULL,
        PRIMARY KEY (username, client)
    );
    CREATE INDEX console_login_failures_by_time ON console_login_failures (last_failure_ns);
    ALTER TABLE console_users ADD COLUMN totp_secret BLOB;
    ALTER TABLE console_users ADD COLUMN totp_pending BLOB;
    ALTER TABLE console_users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE console_users ADD COLUMN totp_enrolled_at_ns INTEGER;
    CREATE TABLE console_recovery_codes (
        username TEXT NOT NULL REFERENCES console_users(username),
        code_sha256 BLOB NOT NULL,
        used_at_ns INTEGER,
        PRIMARY KEY (username, code_sha256)
    );
    ALTER TABLE console_sessions ADD COLUMN second_factor_pending INTEGER NOT NULL DEFAULT 0;
    """,
    # heartbeats carry the battery's voltage and rate, the SoC temperature, the clock's sync
    """
    ALTER TABLE badge_state ADD COLUMN battery_millivolts INTEGER;
    ALTER TABLE badge_state ADD COLUMN battery_rate_millipercent_per_hour INTEGER;
    ALTER TABLE badge_state ADD COLUMN soc_temperature_millicelsius INTEGER;
    ALTER TABLE badge_state ADD COLUMN clock_synchronised INTEGER;
    """,
    # badge-born keys (decision 1900): every key says how it was made, the keys enrolled
    # before were made by the gateway; one-time enrolment codes are kept as digests only
    """
    ALTER TABLE badge_keys ADD COLUMN origin TEXT NOT NULL DEFAULT 'gateway-generated'
        CHECK (origin IN ('badge-generated', 'badge-hardware', 'gateway-generated'));
    ALTER TABLE badge_keys ADD COLUMN tls_certificate BLOB;
    CREATE TABLE enrolment_codes (
        code_digest BLOB PRIMARY KEY,
        badge_id TEXT NOT NULL,
        rotate INTEGER NOT NULL,
        wearer TEXT NOT NULL,
        location TEXT NOT NULL,
        operator TEXT NOT NULL,
        broker_host TEXT NOT NULL,
        broker_port INTEGER NOT NULL,
        issued_at_ns INTEGER NOT NULL,
        expires_at_ns INTEGER NOT NULL,
        used_at_ns INTEGER,
        outcome TEXT
    );
    CREATE INDEX enrolment_codes_by_issue ON enrolment_codes (issued_at_ns);
    """,
    # which intake worker holds which shard of the badges, until when (decision 2303)
    """
    CREATE TABLE intake_shard_leases (
        shard INTEGER NOT NULL PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ns INTEGER NOT NULL
    );
    """,
)
"""Each entry moves the schema one version up; never edit one that has shipped."""
