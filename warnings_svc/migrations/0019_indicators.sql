-- The public page's satisfaction form is open to anyone: scores taken from one client address are counted
-- here for the rate limit (`warnings_svc.coverage.satisfaction`), and forgotten once older than its window.
-- Kept apart from svc.satisfaction so that no score stays linked to an address.
CREATE TABLE svc.satisfaction_attempt (
    remote_address text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX satisfaction_attempt_address ON svc.satisfaction_attempt (remote_address, at);
