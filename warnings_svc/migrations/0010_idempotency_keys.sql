-- Idempotency keys of the write API (issue 16): a client that lost its connection retries with the same
-- `Idempotency-Key` and gets the first answer instead of acting twice. A key belongs to one user; the row
-- remembers which request it was first used for (method, path, SHA-256 of the body) and, once the handler
-- answered, that answer. `status` NULL: the first request is still running (or died: see web/idempotency.py).
-- Rows older than a day are purged by the service as it inserts new ones.
CREATE TABLE svc.idempotency_key (
    user_id      bigint NOT NULL REFERENCES svc.app_user (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (key ~ '^[\x20-\x7e]{1,255}$'),
    method       text NOT NULL,
    path         text NOT NULL,
    body_sha256  bytea NOT NULL CHECK (length(body_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    status       integer CHECK (status BETWEEN 100 AND 499),
    headers      jsonb,
    body         bytea,
    answered_at  timestamptz,
    PRIMARY KEY (user_id, key),
    CHECK ((status IS NULL) = (answered_at IS NULL))
);
CREATE INDEX idempotency_key_created_at ON svc.idempotency_key (created_at);
