-- Acknowledgements (叫应): every call carries its own one-time link, so the link says who was called and an
-- escalation call does not void the link an earlier call gave. svc.ack_request.token_hash keeps the latest.
CREATE TABLE svc.ack_token (
    token_hash  bytea PRIMARY KEY,                 -- SHA-256 of the token; the token itself is never stored
    request_id  bigint NOT NULL REFERENCES svc.ack_request (id) ON DELETE CASCADE,
    person_id   bigint REFERENCES svc.duty_person (id) ON DELETE SET NULL,
    version     int NOT NULL,
    step        smallint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX ack_token_request ON svc.ack_token (request_id);
