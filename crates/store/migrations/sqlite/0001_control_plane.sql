-- Timestamps are milliseconds since the Unix epoch (BIGINT) on both back-ends;
-- IDs are bare UUID text (the API adds the prefix).

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    name           TEXT,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE memberships (
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER')),
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, created_at);

CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT,
    lookup_hash      TEXT NOT NULL UNIQUE,
    secret_hash      TEXT NOT NULL,
    key_prefix       TEXT NOT NULL,
    is_active        BOOLEAN NOT NULL,
    expires_at       BIGINT,
    last_used_at     BIGINT,
    created_by_id    TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX api_keys_org ON api_keys (organization_id, created_at);

CREATE TABLE loads (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    load_number      TEXT NOT NULL,
    tms_load_id      TEXT,
    details          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (organization_id, load_number)
);
CREATE INDEX loads_org_created ON loads (organization_id, created_at);
CREATE INDEX loads_tms ON loads (organization_id, tms_load_id);

CREATE TABLE sip_trunks (
    id                    TEXT PRIMARY KEY,
    organization_id       TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    host                  TEXT NOT NULL,
    port                  BIGINT NOT NULL,
    transport             TEXT NOT NULL CHECK (transport IN ('udp', 'tcp')),
    username              TEXT,
    password              TEXT,
    realm                 TEXT,
    from_domain           TEXT,
    max_concurrent_calls  BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE phone_numbers (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    number               TEXT NOT NULL UNIQUE,
    sip_trunk_id         TEXT NOT NULL REFERENCES sip_trunks(id),
    is_default_outbound  BOOLEAN NOT NULL,
    inbound_agent        TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX phone_numbers_org ON phone_numbers (organization_id, created_at);

CREATE TABLE calls (
    id                    TEXT PRIMARY KEY,
    organization_id       TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    status                TEXT NOT NULL,
    call_time             BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    call_direction        TEXT,
    to_number             TEXT,
    from_number           TEXT,
    call_start_time       BIGINT,
    call_end_time         BIGINT,
    call_type             TEXT,
    load_id               TEXT REFERENCES loads(id),
    created_by_id         TEXT,
    recording_status      TEXT,
    failure_reason        TEXT,
    sip_status            BIGINT,
    answered_by           TEXT,
    duration_seconds      DOUBLE PRECISION,
    metadata              TEXT,
    agent                 TEXT,
    record                BOOLEAN NOT NULL,
    ring_timeout_seconds  BIGINT NOT NULL,
    max_duration_seconds  BIGINT NOT NULL,
    sip_trunk_id          TEXT,
    claimed_by            TEXT,
    claimed_at            BIGINT
);
CREATE INDEX calls_org_call_time ON calls (organization_id, call_time);
CREATE INDEX calls_org_created ON calls (organization_id, created_at);
CREATE INDEX calls_due ON calls (status, call_time);
CREATE INDEX calls_load ON calls (load_id, created_at);

CREATE TABLE idempotency_keys (
    organization_id  TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    call_id          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (organization_id, idempotency_key)
);

CREATE TABLE transcript_turns (
    id                     TEXT PRIMARY KEY,
    call_id                TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    role                   TEXT NOT NULL,
    content                TEXT NOT NULL,
    at                     BIGINT NOT NULL,
    interrupted            BOOLEAN NOT NULL,
    transcript_confidence  DOUBLE PRECISION,
    tool_calls             TEXT NOT NULL,
    tool_call_id           TEXT
);
CREATE INDEX transcript_turns_call ON transcript_turns (call_id, at);

-- The outbox: every domain event, written in the transaction of the change.
CREATE TABLE events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    organization_id  TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    data             TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX events_subject ON events (subject_id, seq);
