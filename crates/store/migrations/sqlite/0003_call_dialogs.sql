-- The SIP dialog of each answered call, kept while the call is live so that
-- a process that takes over after a crash can still send BYE for it.
-- `data` is the engine's own JSON (Call-ID, tags, remote target, route set,
-- next CSeq); the store does not look inside.
CREATE TABLE call_dialogs (
    call_id     TEXT PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
