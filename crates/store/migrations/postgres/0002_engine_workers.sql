-- SIP engine processes and their heartbeats. A live call whose
-- `claimed_by` names no fresh worker was left by a dead process and is
-- failed with failure_reason 'server_restart'.
CREATE TABLE engine_workers (
    worker_id     TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);
CREATE INDEX calls_live_claim ON calls (status, claimed_by);
CREATE INDEX calls_trunk_status ON calls (sip_trunk_id, status);
