-- Dissemination: the transactional outbox and what the dispatcher makes of it (warnings_svc.outbox,
-- warnings_svc.dispatch).
--
-- A fan-out is written by the very transaction that issues a version (Alert, Update or Cancel): one row per
-- channel, the durable promise that everyone the version reaches on that channel gets a delivery. Dispatchers
-- expand it into deliveries chunk by chunk, each chunk and the cursor in one transaction, so the approval
-- stays short however many people a warning reaches and a crash anywhere neither loses nor doubles a row.
CREATE TABLE svc.fanout (
    id              bigserial PRIMARY KEY,
    warning_id      bigint NOT NULL,
    version         int NOT NULL,
    channel         text NOT NULL CHECK (channel ~ '^[a-z][a-z0-9_]*$'),
    priority        smallint NOT NULL CHECK (priority BETWEEN 0 AND 9),  -- 0 red, 1 orange, 2 yellow, 3 blue
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dropped')),
    after_recipient bigint NOT NULL DEFAULT 0,   -- expansion cursor: recipients up to this id are done
    deliveries      int NOT NULL DEFAULT 0,      -- deliveries written
    unchanged       int NOT NULL DEFAULT 0,      -- people an Update left unchanged (not texted again)
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version),
    UNIQUE (warning_id, version, channel)
);
CREATE INDEX fanout_pending ON svc.fanout (priority, id) WHERE state = 'pending';

-- One message to one person on one channel, at most one per version: (warning_id, version, channel,
-- recipient_id) is its identity and, written as "warning-version/channel/recipient", the idempotency key every
-- attempt carries (warnings_svc.outbox.claim). Few indexes on purpose: every state change rewrites them all.
-- pending -> sending (claimed under a lease) -> sent (the remote end took it) -> delivered | accepted | failed
-- (receipts); a temporary failure goes back to pending with a later next_attempt_at; dead: given up, with the
-- reason; dropped: its version stopped being in force (updated, cancelled, expired) before it was sent.
CREATE TABLE svc.delivery (
    id              bigserial PRIMARY KEY,
    fanout_id       bigint NOT NULL REFERENCES svc.fanout (id),
    warning_id      bigint NOT NULL,
    version         int NOT NULL,
    channel         text NOT NULL,
    recipient_id    bigint NOT NULL REFERENCES svc.recipient (id),
    address         text NOT NULL,
    language        text NOT NULL,
    areas           text[] NOT NULL,             -- the version's areas relevant to the person (what they are told)
    priority        smallint NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'delivered', 'accepted', 'failed', 'dead',
                                     'dropped')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    endpoint        text,                        -- the endpoint that took it
    segments        int NOT NULL DEFAULT 0,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    final_at        timestamptz,
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version),
    CHECK ((state = 'sending') = (lease_until IS NOT NULL))
);
CREATE INDEX delivery_ready ON svc.delivery (channel, priority, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX delivery_leased ON svc.delivery (lease_until) WHERE state = 'sending';
-- What each person was told about a warning (Update and Cancel fan-outs), and no delivery twice.
CREATE UNIQUE INDEX delivery_identity ON svc.delivery (warning_id, recipient_id, version, channel);

-- The persisted message-id map: the ids a remote end gave each part, so receipts find their delivery.
CREATE TABLE svc.delivery_part (
    endpoint    text NOT NULL,
    remote_id   text NOT NULL,
    delivery_id bigint NOT NULL REFERENCES svc.delivery (id),
    PRIMARY KEY (endpoint, remote_id)
);
CREATE INDEX delivery_part_delivery ON svc.delivery_part (delivery_id);

-- Receipts as they came, kept apart from the map: a receipt may be written before the map row of its part
-- (the SMSC answers and reports faster than a batch's results are stored); the two meet when either lands.
CREATE TABLE svc.receipt (
    endpoint    text NOT NULL,
    remote_id   text NOT NULL,
    state       text NOT NULL CHECK (state IN ('delivered', 'accepted', 'en_route', 'expired', 'failed', 'unknown')),
    raw_state   text NOT NULL DEFAULT '',
    error_code  text NOT NULL DEFAULT '',
    done_at     timestamptz,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, remote_id)
);
