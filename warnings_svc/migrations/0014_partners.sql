-- Departments and partners (warnings_svc.partners): the registry of departments with their duty chains,
-- partners' subscriptions and their deliveries (webhook, email, MQTT topic, SMS), the acknowledgements that
-- responsible people owe for high-level warnings (叫应) with their escalation, messages received from phones,
-- and relayers' reports of how many people they passed a warning on to (再传播).

-- A department of the city or a district, by sector, with the hazards it responds to and the lowest level
-- that calls it. `code` is the key an import matches on; a retired department keeps its row and history.
CREATE TABLE svc.department (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    name_en     text NOT NULL DEFAULT '' CHECK (length(name_en) <= 120),
    sector      text NOT NULL CHECK (sector IN ('emergency', 'education', 'agriculture', 'transport', 'housing',
                                                'water', 'power', 'health', 'media', 'other')),
    area        text NOT NULL CHECK (area ~ '^[0-9]{12}$'),     -- the city, district or town it serves
    hazards     text[] NOT NULL DEFAULT '{heat,rainstorm,frost,sandstorm}'
                CHECK (cardinality(hazards) > 0 AND hazards <@ ARRAY['heat', 'rainstorm', 'frost', 'sandstorm']),
    min_level   text NOT NULL DEFAULT 'blue' CHECK (min_level IN ('blue', 'yellow', 'orange', 'red')),
    source      text NOT NULL DEFAULT '' CHECK (length(source) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE INDEX department_area ON svc.department (area) WHERE retired_at IS NULL;

-- A department's duty chain: the duty contact first, then the deputy, then the leader (one person per rank).
CREATE TABLE svc.duty_person (
    id            bigserial PRIMARY KEY,
    department_id bigint NOT NULL REFERENCES svc.department (id) ON DELETE CASCADE,
    rank          text NOT NULL CHECK (rank IN ('duty', 'deputy', 'leader')),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    phone         text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),   -- E.164
    email         text NOT NULL DEFAULT '' CHECK (email = '' OR email ~ '^[^@\s]{1,64}@[^@\s]{1,255}$'),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (department_id, rank)
);
CREATE INDEX duty_person_phone ON svc.duty_person (phone);

-- A partner's subscription: which warnings (hazards, levels, areas, message types; empty = all) go where,
-- on one channel. A webhook signs with `secret` (Standard Webhooks, whsec_...) and, during a rotation, also
-- with `previous_secret` until `previous_until`. State: active | paused (by its owner) | disabled (the
-- endpoint answered 410, or an admin), with the reason.
CREATE TABLE svc.subscription (
    id              bigserial PRIMARY KEY,
    owner           text NOT NULL CHECK (length(owner) BETWEEN 1 AND 64),     -- the user who made it
    department_id   bigint REFERENCES svc.department (id) ON DELETE SET NULL,
    name            text NOT NULL DEFAULT '' CHECK (length(name) <= 80),
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email', 'mqtt', 'sms')),
    address         text NOT NULL CHECK (length(address) BETWEEN 1 AND 2000), -- URL, email, topic or phone
    hazards         text[] NOT NULL DEFAULT '{}' CHECK (hazards <@ ARRAY['heat', 'rainstorm', 'frost', 'sandstorm']),
    levels          text[] NOT NULL DEFAULT '{}' CHECK (levels <@ ARRAY['blue', 'yellow', 'orange', 'red']),
    areas           text[] NOT NULL DEFAULT '{}'
                    CHECK (array_to_string(areas, ',') ~ '^([0-9]{12}(,[0-9]{12})*)?$'),
    msg_types       text[] NOT NULL DEFAULT '{}' CHECK (msg_types <@ ARRAY['Alert', 'Update', 'Cancel']),
    state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
    reason          text NOT NULL DEFAULT '' CHECK (length(reason) <= 300),
    secret          text NOT NULL DEFAULT '',
    previous_secret text NOT NULL DEFAULT '',
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX subscription_live ON svc.subscription (channel) WHERE state = 'active' AND deleted_at IS NULL;

-- What every partner gets of one issued version, stored once per version (the webhook's JSON document, with
-- the CAP document in it; a subject and a text for people), so that a thousand subscriptions do not copy it.
CREATE TABLE svc.partner_document (
    warning_id bigint NOT NULL,
    version    int NOT NULL,
    payload    jsonb NOT NULL,
    subject    text NOT NULL,
    text       text NOT NULL,
    sms_text   text NOT NULL,
    PRIMARY KEY (warning_id, version),
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version)
);

-- One issued version sent to one subscription (or, for an acknowledgement call, to one person): its
-- identity is (subscription_id, warning_id, version) and `message_id` the idempotency key every attempt
-- carries (the webhook-id), stable across retries. `body` is what is sent when it is not the version's partner
-- document (an acknowledgement call's text); '{}' for a subscription's delivery. Retries follow the
-- schedule and stop at `give_up_at` (the warning's expiry). pending -> sending (leased) -> delivered | dead
-- | dropped; a failure goes back to pending with a later next_attempt_at.
CREATE TABLE svc.partner_delivery (
    id              bigserial PRIMARY KEY,
    subscription_id bigint REFERENCES svc.subscription (id),
    ack_request_id  bigint,                                   -- set for an acknowledgement call
    warning_id      bigint NOT NULL,
    version         int NOT NULL,
    msg_type        text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email', 'mqtt', 'sms')),
    address         text NOT NULL,
    message_id      text NOT NULL UNIQUE,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'delivered', 'dead', 'dropped')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    give_up_at      timestamptz NOT NULL,
    lease_owner     text,
    lease_until     timestamptz,
    body            jsonb NOT NULL,
    last_status     int,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version),
    CHECK ((state = 'sending') = (lease_until IS NOT NULL)),
    CHECK ((subscription_id IS NULL) <> (ack_request_id IS NULL))
);
CREATE UNIQUE INDEX partner_delivery_identity ON svc.partner_delivery (subscription_id, warning_id, version)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX partner_delivery_ready ON svc.partner_delivery (channel, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX partner_delivery_leased ON svc.partner_delivery (lease_until) WHERE state = 'sending';
CREATE INDEX partner_delivery_log ON svc.partner_delivery (subscription_id, id DESC);

-- Every attempt of a partner delivery, as the delivery log shows it.
CREATE TABLE svc.partner_attempt (
    id          bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES svc.partner_delivery (id),
    attempt     int NOT NULL,
    started_at  timestamptz NOT NULL,
    latency_ms  int NOT NULL CHECK (latency_ms >= 0),
    outcome     text NOT NULL CHECK (outcome IN ('delivered', 'temporary_failure', 'permanent_failure')),
    status      int,                       -- the HTTP status or SMTP reply code, when there was one
    error       text NOT NULL DEFAULT '' CHECK (length(error) <= 500),
    manual      boolean NOT NULL DEFAULT false     -- "send again" by a person
);
CREATE INDEX partner_attempt_delivery ON svc.partner_attempt (delivery_id, id);

-- What a responsible person owes for one high-level warning (叫应): one row per warning and department,
-- written when the warning is issued; `step` is how far escalation went (0 the duty contact was called,
-- 1 called again, 2 the deputy, 3 the leader, 4 on the duty officer's call list). `code` is the short code
-- an SMS reply carries; `token_hash` the SHA-256 of the one-time link's token.
CREATE TABLE svc.ack_request (
    id              bigserial PRIMARY KEY,
    warning_id      bigint NOT NULL,
    version         int NOT NULL,
    department_id   bigint NOT NULL REFERENCES svc.department (id),
    code            text NOT NULL CHECK (code ~ '^[0-9]{4,8}$'),
    token_hash      bytea NOT NULL UNIQUE,
    step            smallint NOT NULL DEFAULT 0 CHECK (step BETWEEN 0 AND 4),
    deadline        timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'waiting'
                    CHECK (state IN ('waiting', 'acknowledged', 'calling', 'closed')),
    acknowledged_at timestamptz,
    acknowledged_by text NOT NULL DEFAULT '',      -- the person (name and rank) or console user
    via             text NOT NULL DEFAULT '' CHECK (via IN ('', 'sms', 'link', 'callback', 'console', 'call')),
    call_outcome    text NOT NULL DEFAULT '' CHECK (length(call_outcome) <= 300),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version),
    UNIQUE (warning_id, department_id),
    UNIQUE (warning_id, code)
);
CREATE INDEX ack_request_due ON svc.ack_request (deadline) WHERE state = 'waiting';
ALTER TABLE svc.partner_delivery ADD FOREIGN KEY (ack_request_id) REFERENCES svc.ack_request (id);

-- Messages received from phones (mobile-originated deliver_sm) as they came, and what was made of them.
CREATE TABLE svc.inbound_sms (
    id          bigserial PRIMARY KEY,
    endpoint    text NOT NULL,
    source      text NOT NULL CHECK (length(source) <= 32),
    destination text NOT NULL DEFAULT '' CHECK (length(destination) <= 32),
    text        text NOT NULL CHECK (length(text) <= 1000),
    received_at timestamptz NOT NULL DEFAULT now(),
    handled_at  timestamptz,
    outcome     text NOT NULL DEFAULT '' CHECK (length(outcome) <= 300)
);
CREATE INDEX inbound_sms_unhandled ON svc.inbound_sms (id) WHERE handled_at IS NULL;

-- How many people a relayer passed a warning on to (再传播), as they reported it: the latest report per
-- relayer and warning counts; `people` is capped by the population they serve (`reported` is what was said).
ALTER TABLE svc.recipient ADD COLUMN serves int CHECK (serves BETWEEN 0 AND 10000000);
CREATE TABLE svc.relay_report (
    warning_id   bigint NOT NULL,
    recipient_id bigint NOT NULL REFERENCES svc.recipient (id),
    area         text NOT NULL CHECK (area ~ '^[0-9]{12}$'),
    reported     int NOT NULL CHECK (reported >= 0),
    people       int NOT NULL CHECK (people >= 0 AND people <= reported),
    via          text NOT NULL CHECK (via IN ('sms', 'link')),
    reported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (warning_id, recipient_id)
);
