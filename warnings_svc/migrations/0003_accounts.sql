-- Who uses the service: accounts with one role each, bearer tokens for programs, console sessions for people,
-- and the failed logins that rate limiting counts. Secrets are stored only as hashes: argon2id for passwords,
-- SHA-256 for tokens and session ids (both are 256 random bits, so a fast hash is enough).
CREATE TABLE svc.app_user (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_.-]{1,31}$'),
    role          text NOT NULL CHECK (role IN ('forecaster', 'approver', 'operations', 'department', 'admin')),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 80),
    password_hash text,                            -- PHC string; NULL: a token-only account, cannot log in
    disabled      boolean NOT NULL DEFAULT false,  -- refused everywhere; kept, since the audit log names it
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE svc.api_token (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES svc.app_user (id) ON DELETE CASCADE,
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write']),
    label        text NOT NULL DEFAULT '' CHECK (length(label) <= 80),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_token_user ON svc.api_token (user_id);

CREATE TABLE svc.web_session (
    id_sha256    text PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
    user_id      bigint NOT NULL REFERENCES svc.app_user (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,                    -- not a credential on its own; forms must echo it
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),  -- for the idle timeout
    expires_at   timestamptz NOT NULL,             -- the absolute end, however active the session is
    CHECK (expires_at > created_at)
);
CREATE INDEX web_session_user ON svc.web_session (user_id);
CREATE INDEX web_session_expires ON svc.web_session (expires_at);

-- One row per failed password login, by the name tried (existing or not) and the client's address.
CREATE TABLE svc.login_failure (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL,
    remote_address text NOT NULL DEFAULT '',
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failure_name ON svc.login_failure (name, at);
CREATE INDEX login_failure_remote ON svc.login_failure (remote_address, at);
