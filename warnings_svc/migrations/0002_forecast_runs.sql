-- Forecast runs, the proposals scored from them, and the warnings in force that later runs are diffed against.
CREATE TABLE svc.forecast_run (
    id             bigserial PRIMARY KEY,
    content_sha256 text NOT NULL UNIQUE,          -- of the files' contents, so a re-delivered run is stored once
    files          jsonb NOT NULL,                -- [{name, bytes, sha256}]
    reference_time timestamptz,
    received_at    timestamptz NOT NULL DEFAULT now(),
    scored_at      timestamptz,
    members        int NOT NULL DEFAULT 0,
    quantities     text[] NOT NULL DEFAULT '{}',
    source         text NOT NULL DEFAULT '',
    risk_version   bigint,
    summary        jsonb NOT NULL DEFAULT '{}'    -- the "run" object of `warnings-svc score`
);

-- A warning in force, as far as scoring needs to know it; the lifecycle (approval, texts, versions) extends it.
CREATE TABLE svc.warning (
    id          bigserial PRIMARY KEY,
    hazard      text NOT NULL CHECK (hazard IN ('heat', 'rainstorm', 'frost', 'sandstorm')),
    level       text NOT NULL CHECK (level IN ('blue', 'yellow', 'orange', 'red')),
    areas       text[] NOT NULL CHECK (cardinality(areas) > 0),
    onset       timestamptz NOT NULL,
    expires     timestamptz NOT NULL CHECK (expires > onset),
    status      text NOT NULL DEFAULT 'issued'
                CHECK (status IN ('draft', 'pending', 'issued', 'updated', 'cancelled', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warning_in_force ON svc.warning (hazard) WHERE status IN ('issued', 'updated');

CREATE TABLE svc.proposal (
    id                 bigserial PRIMARY KEY,
    run_id             bigint NOT NULL REFERENCES svc.forecast_run (id) ON DELETE CASCADE,
    hazard             text NOT NULL CHECK (hazard IN ('heat', 'rainstorm', 'frost', 'sandstorm')),
    level              text NOT NULL CHECK (level IN ('blue', 'yellow', 'orange', 'red')),
    action             text NOT NULL CHECK (action IN ('new', 'extend', 'upgrade', 'downgrade', 'expand',
                                                       'shrink', 'unchanged', 'cancel')),
    replaces           bigint REFERENCES svc.warning (id),
    areas              text[] NOT NULL,
    onset              timestamptz NOT NULL,
    expires            timestamptz NOT NULL,
    probability        real NOT NULL CHECK (probability BETWEEN 0 AND 1),
    exposed_population int NOT NULL CHECK (exposed_population >= 0),
    document           jsonb NOT NULL,            -- the proposal as `warnings-svc score` prints it
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'superseded', 'accepted', 'dismissed')),
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proposal_open ON svc.proposal (hazard, created_at) WHERE status = 'open';
