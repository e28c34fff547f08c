-- Recordings after the call: one row per call whose live recording ended.
-- calls.recording_status stays the status the API shows; this row holds the
-- stored objects and the encoding worker's claim (a lease, so a dead
-- process's claim runs out and another worker takes the recording).
CREATE TABLE recordings (
    call_id               TEXT PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE,
    organization_id       TEXT NOT NULL,
    status                TEXT NOT NULL,
    object_prefix         TEXT,
    duration_seconds      DOUBLE PRECISION,
    stereo_bytes          BIGINT,
    customer_bytes        BIGINT,
    agent_bytes           BIGINT,
    recording_start_time  BIGINT,
    failure_reason        TEXT,
    claimed_by            TEXT,
    claim_expires_at      BIGINT,
    attempts              BIGINT NOT NULL,
    available_at          BIGINT,
    deleted_at            BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX recordings_retention ON recordings (status, available_at);
-- The encoding worker's queue: calls whose recording waits to be stored.
CREATE INDEX calls_recording_processing ON calls (call_end_time) WHERE recording_status = 'PROCESSING';

-- Days an organization keeps recordings (NULL: the server's default).
ALTER TABLE organizations ADD COLUMN recording_retention_days BIGINT;
