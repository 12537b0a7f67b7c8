-- The channels that reach everyone in an area (warnings_svc.dissemination.area_outbox): operator area SMS,
-- cell broadcast, terminals over MQTT, the emergency broadcast platform, radio and TV. Each issued version
-- is put out once to each configured target of these channels (an operator, a CBC, an MQTT broker, a
-- platform, a broadcaster); what comes back is evidence of reach per area.

-- Terminals that play or show warnings (village loudspeakers, LED displays), each in one area, serving the
-- people around it. They listen on one MQTT broker (a `[[dispatch.mqtt]]` target's name) and acknowledge
-- playback there; a retired terminal keeps its row and its acknowledgements.
CREATE TABLE svc.terminal (
    id                bigserial PRIMARY KEY,
    terminal_id       text NOT NULL UNIQUE CHECK (terminal_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    kind              text NOT NULL CHECK (kind IN ('loudspeaker', 'display')),
    area              text NOT NULL CHECK (area ~ '^[0-9]{12}$'),
    population_served int NOT NULL CHECK (population_served BETWEEN 0 AND 10000000),
    target            text NOT NULL CHECK (target ~ '^[a-z][a-z0-9_-]{0,39}$'),
    name              text NOT NULL DEFAULT '' CHECK (length(name) <= 80),
    registered_at     timestamptz NOT NULL DEFAULT now(),
    retired_at        timestamptz
);
CREATE INDEX terminal_area ON svc.terminal (target, area) WHERE retired_at IS NULL;

-- One warning version put out to one target, at most once per action: (warning_id, version, channel, target,
-- msg_type) is its identity and, as "warning-version/channel/target" (with "/expire" for an expiry), the
-- idempotency key every attempt carries. msg_type Expire clears what an expired version left at the target
-- (retained messages, a running task). Written in the transaction that issues (or expires) the version.
-- pending -> sending (claimed under a lease) -> done (the target took it) | dead (given up, with the reason)
-- | dropped (superseded, cancelled or expired before it went out); a temporary failure goes back to pending.
-- A delivery waits while an earlier one to the same target for the same warning is pending or sending, so
-- an Update or a Cancel finds what it replaces (`remote_id`) at the target.
CREATE TABLE svc.area_delivery (
    id              bigserial PRIMARY KEY,
    warning_id      bigint NOT NULL,
    version         int NOT NULL,
    channel         text NOT NULL CHECK (channel ~ '^[a-z][a-z0-9_]*$'),
    target          text NOT NULL CHECK (target ~ '^[a-z][a-z0-9_-]{0,39}$'),
    msg_type        text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel', 'Expire')),
    priority        smallint NOT NULL CHECK (priority BETWEEN 0 AND 9),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'done', 'dead', 'dropped')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    remote_id       text NOT NULL DEFAULT '',    -- what the target calls it (task id, message id, topics)
    route           text NOT NULL DEFAULT '',    -- the target's route that took it (or failed last)
    reason          text NOT NULL DEFAULT '',
    -- what is put out, as issued (channels.area.AreaAlert without its key and links to earlier tasks): a
    -- retry sends exactly this, never a text rebuilt later
    content         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version),
    UNIQUE (warning_id, version, channel, target, msg_type),
    CHECK ((state = 'sending') = (lease_until IS NOT NULL))
);
CREATE INDEX area_delivery_ready ON svc.area_delivery (channel, target, priority, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX area_delivery_leased ON svc.area_delivery (lease_until) WHERE state = 'sending';

-- Evidence of reach per warning version, channel, target and area: what a peer counted (measured: handsets
-- delivered, playback acknowledged) or what is estimated (cell broadcast, audience share). Figures are
-- cumulative: a later report replaces an earlier one. ``people`` is the population the evidence stands for
-- when it is known (terminals' population served, an estimate's people); NULL when only handsets are counted.
CREATE TABLE svc.reach_evidence (
    warning_id  bigint NOT NULL,
    version     int NOT NULL,
    channel     text NOT NULL,
    target      text NOT NULL,
    area        text NOT NULL CHECK (area ~ '^([0-9]{12})?$'),
    kind        text NOT NULL CHECK (kind IN ('handsets', 'playback', 'airing', 'broadcast')),
    measured    boolean NOT NULL,
    targeted    bigint NOT NULL DEFAULT 0 CHECK (targeted >= 0),
    sent        bigint NOT NULL DEFAULT 0 CHECK (sent >= 0),
    delivered   bigint NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    people      bigint CHECK (people >= 0),
    final       boolean NOT NULL DEFAULT false,
    detail      jsonb NOT NULL DEFAULT '{}',
    reported_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (warning_id, version, channel, target, area, kind),
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version)
);

-- A terminal's acknowledgement that it played or showed a version, once per terminal and version.
CREATE TABLE svc.terminal_ack (
    terminal_id text NOT NULL REFERENCES svc.terminal (terminal_id),
    warning_id  bigint NOT NULL,
    version     int NOT NULL,
    played_at   timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_id, warning_id, version),
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version)
);
CREATE INDEX terminal_ack_version ON svc.terminal_ack (warning_id, version);
