-- The warning lifecycle: every version of a warning, the documents issued for it, and the audit log.
-- svc.warning stays the warning's identity and its public face (what scoring diffs against); every version
-- (Alert, Update, Cancel; draft to issued) is a row of svc.warning_version.
ALTER TABLE svc.warning DROP CONSTRAINT warning_status_check;
ALTER TABLE svc.warning ADD CONSTRAINT warning_status_check
    CHECK (status IN ('draft', 'pending', 'pending_approval', 'returned', 'issued', 'updated', 'cancelled',
                      'expired', 'discarded'));
ALTER TABLE svc.warning
    ADD COLUMN exercise        boolean NOT NULL DEFAULT false,
    ADD COLUMN current_version int NOT NULL DEFAULT 1,
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();

CREATE TABLE svc.warning_version (
    warning_id         bigint NOT NULL REFERENCES svc.warning (id),
    version            int NOT NULL CHECK (version >= 1),
    msg_type           text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    status             text NOT NULL CHECK (status IN ('draft', 'pending_approval', 'returned', 'issued', 'updated',
                                                       'cancelled', 'expired', 'discarded')),
    hazard             text NOT NULL CHECK (hazard IN ('heat', 'rainstorm', 'frost', 'sandstorm')),
    level              text NOT NULL CHECK (level IN ('blue', 'yellow', 'orange', 'red')),
    areas              text[] NOT NULL CHECK (cardinality(areas) > 0),
    polygons           text[] NOT NULL DEFAULT '{}',
    onset              timestamptz NOT NULL,
    expires            timestamptz NOT NULL CHECK (expires > onset),
    probability        real CHECK (probability BETWEEN 0 AND 1),
    exposed_population int CHECK (exposed_population >= 0),
    texts              jsonb NOT NULL DEFAULT '{}',   -- forecaster's own headline/description/instruction per language
    note               text NOT NULL DEFAULT '',
    exercise           boolean NOT NULL DEFAULT false,
    created_by         text NOT NULL,
    last_edited_by     text NOT NULL,
    editors            text[] NOT NULL,
    approved_by        text NOT NULL DEFAULT '',
    approved_at        timestamptz,
    approval_comment   text NOT NULL DEFAULT '',
    return_reason      text NOT NULL DEFAULT '',
    "references"       text[] NOT NULL DEFAULT '{}',  -- "id/version" of every earlier version
    proposal_id        bigint REFERENCES svc.proposal (id),
    identifier         text UNIQUE,                   -- CAP/GB-T identifier, set when issued
    sent               timestamptz,
    cap_xml            bytea,
    gbt_xml            bytea,
    rendered           jsonb,                         -- the channel texts issued, per language
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (warning_id, version),
    CHECK ((status IN ('issued', 'updated', 'cancelled', 'expired'))
           = (identifier IS NOT NULL AND sent IS NOT NULL AND cap_xml IS NOT NULL))
);
CREATE INDEX warning_version_public ON svc.warning_version (sent DESC) WHERE identifier IS NOT NULL;
CREATE INDEX warning_version_open ON svc.warning_version (status)
    WHERE status IN ('draft', 'pending_approval', 'returned');

-- Append-only and tamper-evident: each entry's hash covers its content and its predecessor's hash
-- (warnings_svc.audit); the triggers refuse any change or removal of an entry.
CREATE TABLE svc.audit_log (
    seq       bigint PRIMARY KEY CHECK (seq >= 1),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    subject   text NOT NULL,
    before    jsonb,
    after     jsonb,
    prev_hash text NOT NULL,
    hash      text NOT NULL UNIQUE
);
CREATE INDEX audit_log_subject ON svc.audit_log (subject, seq);

CREATE FUNCTION svc.audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'svc.audit_log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON svc.audit_log
    FOR EACH ROW EXECUTE FUNCTION svc.audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON svc.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION svc.audit_log_is_append_only();
