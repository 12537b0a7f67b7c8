-- Who warnings reach: people registered by phone for areas (the risk database's 12-digit unit geocodes),
-- with their roles, the hazards they want (none listed: all), consent and opt-out (warnings_svc.recipients).
-- An opted-out person keeps their row, so a later import cannot silently register them again.
CREATE TABLE svc.recipient (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    phone          text NOT NULL UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),  -- E.164
    language       text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en')),
    areas          text[] NOT NULL
                   CHECK (cardinality(areas) > 0 AND array_to_string(areas, ',') ~ '^[0-9]{12}(,[0-9]{12})*$'),
    roles          text[] NOT NULL
                   CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['responsible_person', 'relayer', 'village_head',
                                                                    'public_subscriber', 'department']),
    hazards        text[] NOT NULL DEFAULT '{}' CHECK (hazards <@ ARRAY['heat', 'rainstorm', 'frost', 'sandstorm']),
    consent        boolean NOT NULL DEFAULT false,
    consent_basis  text CHECK (consent_basis IN ('explicit', 'duty')),  -- duty: registered for their office
    consent_at     timestamptz,
    test_recipient boolean NOT NULL DEFAULT false,  -- receives exercise warnings
    opted_out_at   timestamptz,                     -- set: never selected, whatever else the row says
    source         text NOT NULL DEFAULT '' CHECK (length(source) <= 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (consent = (consent_at IS NOT NULL AND consent_basis IS NOT NULL)),
    CHECK (consent OR NOT 'public_subscriber' = ANY (roles))
);
-- Targeting: `areas && $reach` over the people who may be texted.
CREATE INDEX recipient_areas ON svc.recipient USING gin (areas) WHERE consent AND opted_out_at IS NULL;
CREATE INDEX recipient_test ON svc.recipient (id) WHERE test_recipient AND consent AND opted_out_at IS NULL;

CREATE TABLE svc.recipient_group (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 80),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE svc.recipient_group_member (
    group_id     bigint NOT NULL REFERENCES svc.recipient_group (id) ON DELETE CASCADE,
    recipient_id bigint NOT NULL REFERENCES svc.recipient (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, recipient_id)
);
CREATE INDEX recipient_group_member_recipient ON svc.recipient_group_member (recipient_id);
