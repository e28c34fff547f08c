-- Webhooks: endpoints, the messages fanned out to them from the events
-- outbox, and every delivery attempt. (0004 is the recordings migration.)

CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,
    organization_id             TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    description                 TEXT,
    -- JSON array of event type names; JSON object of header name → value.
    event_types                 TEXT NOT NULL,
    headers                     TEXT NOT NULL,
    status                      TEXT NOT NULL CHECK (status IN ('ACTIVE', 'PAUSED', 'DISABLED')),
    disabled_reason             TEXT,
    -- whsec_…: needed in clear to sign; never returned after create/rotate.
    signing_secret              TEXT NOT NULL,
    previous_signing_secret     TEXT,
    previous_secret_expires_at  BIGINT,
    -- The first failure since the last success (auto-disable counts from it).
    failing_since               BIGINT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (organization_id, created_at);

-- One per event that had a subscribed endpoint; `id` is the webhook-id.
CREATE TABLE webhook_messages (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    event_id         TEXT NOT NULL UNIQUE,
    event_seq        BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    -- The exact body posted, the same for every endpoint and attempt.
    payload          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX webhook_messages_org ON webhook_messages (organization_id, created_at);

-- A message to one endpoint. PENDING until an attempt succeeds or the last dies.
CREATE TABLE webhook_deliveries (
    message_id                 TEXT NOT NULL REFERENCES webhook_messages(id) ON DELETE CASCADE,
    endpoint_id                TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    organization_id            TEXT NOT NULL,
    subject_id                 TEXT NOT NULL,
    event_seq                  BIGINT NOT NULL,
    status                     TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'DEAD')),
    attempt_count              BIGINT NOT NULL,
    -- The attempt number a replay started its series at (1 for the first series).
    series_start               BIGINT NOT NULL,
    last_response_status_code  BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL,
    PRIMARY KEY (message_id, endpoint_id)
);
-- Order per subject and endpoint: the open delivery with the lowest event_seq goes first.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (subject_id, endpoint_id, event_seq)
    WHERE status = 'PENDING';

CREATE TABLE webhook_attempts (
    id                     TEXT PRIMARY KEY,
    message_id             TEXT NOT NULL,
    endpoint_id            TEXT NOT NULL,
    organization_id        TEXT NOT NULL,
    attempt                BIGINT NOT NULL,
    max_attempts           BIGINT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('PENDING', 'SENDING', 'SUCCEEDED', 'FAILED', 'DEAD')),
    -- A PENDING attempt that may not be sent yet: its endpoint is not ACTIVE,
    -- or an earlier event of the same subject is still open for the endpoint.
    -- Held attempts stay out of the due index, so claims never wade through them.
    held                   BOOLEAN NOT NULL DEFAULT FALSE,
    next_attempt_at        BIGINT NOT NULL,
    response_status_code   BIGINT,
    response_body_excerpt  TEXT,
    error_message          TEXT,
    duration_ms            BIGINT,
    delivered_at           BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    -- The worker that moved it PENDING → SENDING, and until when that claim holds.
    claimed_by             TEXT,
    lease_expires_at       BIGINT,
    FOREIGN KEY (message_id, endpoint_id)
        REFERENCES webhook_deliveries (message_id, endpoint_id) ON DELETE CASCADE
);
CREATE INDEX webhook_attempts_due ON webhook_attempts (next_attempt_at)
    WHERE status = 'PENDING' AND held = FALSE;
CREATE INDEX webhook_attempts_held ON webhook_attempts (endpoint_id) WHERE status = 'PENDING' AND held = TRUE;
CREATE INDEX webhook_attempts_sending ON webhook_attempts (lease_expires_at) WHERE status = 'SENDING';
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, created_at);
CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id, created_at);

-- Events not yet fanned out to endpoints. Earlier events predate webhooks.
ALTER TABLE events ADD COLUMN webhooks_dispatched_at BIGINT;
UPDATE events SET webhooks_dispatched_at = created_at;
CREATE INDEX events_webhooks_pending ON events (seq) WHERE webhooks_dispatched_at IS NULL;
