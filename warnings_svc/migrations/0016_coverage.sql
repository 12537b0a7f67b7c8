-- Public coverage of warnings (warnings_svc.coverage): snapshots of the figure computed from the evidence of
-- reach, the escalation ladder applied when a checkpoint finds it below the target, and the public's scores
-- of the service (the plan's satisfaction indicator).

-- One computation of a warning's coverage: the time series while it is live (kind 'series'), the figure at
-- each checkpoint (minutes after issue: 10 and 30 by default) and the final one. `figures` holds the whole
-- result as `warnings_svc.coverage.model.Coverage.as_json` gives it (by channel, by area, the method).
CREATE TABLE svc.coverage_snapshot (
    id            bigserial PRIMARY KEY,
    warning_id    bigint NOT NULL REFERENCES svc.warning (id),
    version       int NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('series', 'checkpoint', 'final')),
    checkpoint_min int CHECK ((kind = 'checkpoint') = (checkpoint_min IS NOT NULL) AND checkpoint_min > 0),
    taken_at      timestamptz NOT NULL DEFAULT now(),
    minutes       double precision NOT NULL CHECK (minutes >= 0),  -- after the warning was first issued
    public        double precision NOT NULL CHECK (public BETWEEN 0 AND 1),
    measured      double precision NOT NULL CHECK (measured BETWEEN 0 AND 1),  -- from measured evidence alone
    population    bigint NOT NULL CHECK (population >= 0),
    reached       bigint NOT NULL CHECK (reached >= 0),
    target        double precision NOT NULL CHECK (target BETWEEN 0 AND 1),
    figures       jsonb NOT NULL,
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version)
);
CREATE INDEX coverage_snapshot_warning ON svc.coverage_snapshot (warning_id, taken_at);
CREATE UNIQUE INDEX coverage_snapshot_checkpoint ON svc.coverage_snapshot (warning_id, checkpoint_min)
    WHERE kind = 'checkpoint';
CREATE UNIQUE INDEX coverage_snapshot_final ON svc.coverage_snapshot (warning_id) WHERE kind = 'final';

-- A step of the escalation ladder for a warning found below the target at a checkpoint: proposed to the duty
-- officer (one click applies it) or applied at once, as `[coverage.escalation]` says. States and their moves
-- are `warnings_svc.coverage.escalation.ESCALATION_TRANSITIONS`.
CREATE TABLE svc.coverage_escalation (
    id             bigserial PRIMARY KEY,
    warning_id     bigint NOT NULL REFERENCES svc.warning (id),
    version        int NOT NULL,
    checkpoint_min int NOT NULL CHECK (checkpoint_min > 0),
    step           smallint NOT NULL CHECK (step >= 1),
    action         text NOT NULL CHECK (action IN ('area_sms_again', 'cell_broadcast', 'loudspeakers_again',
                                                   'more_relayers')),
    state          text NOT NULL CHECK (state IN ('proposed', 'applied', 'declined', 'skipped', 'stopped')),
    coverage       double precision NOT NULL CHECK (coverage BETWEEN 0 AND 1),  -- when it was raised
    decided_by     text NOT NULL DEFAULT '',
    reason         text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    detail         jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz,
    UNIQUE (warning_id, checkpoint_min, step),
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version)
);
CREATE INDEX coverage_escalation_open ON svc.coverage_escalation (warning_id) WHERE state = 'proposed';

-- A score of the warning service (1-5) given by SMS reply or on the public page. The yearly report scales the
-- mean to the plan's 100 points ((mean - 1) / 4 x 100) per district and for the city.
CREATE TABLE svc.satisfaction (
    id           bigserial PRIMARY KEY,
    score        smallint NOT NULL CHECK (score BETWEEN 1 AND 5),
    area         text CHECK (area ~ '^[0-9]{12}$'),           -- where the person is (their registered area)
    warning_id   bigint REFERENCES svc.warning (id),          -- the warning it answers, when known
    via          text NOT NULL CHECK (via IN ('sms', 'web')),
    recipient_id bigint REFERENCES svc.recipient (id),        -- the person, for an SMS reply
    comment      text NOT NULL DEFAULT '' CHECK (length(comment) <= 500),
    given_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX satisfaction_given ON svc.satisfaction (given_at);
-- one score per person and warning by SMS: a second reply replaces the first
CREATE UNIQUE INDEX satisfaction_sms_once ON svc.satisfaction (recipient_id, warning_id)
    WHERE via = 'sms' AND recipient_id IS NOT NULL AND warning_id IS NOT NULL;
