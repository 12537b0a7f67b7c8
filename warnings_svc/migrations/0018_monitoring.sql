-- The first send attempt of each issued version on each channel, kept once whichever dispatcher process made
-- it: approval -> first delivery (warnings_approval_to_first_delivery_seconds) is observed by the process whose
-- insert took the row, so several dispatch workers on one database observe each version and channel once.
CREATE TABLE svc.first_send_attempt (
    warning_id   bigint NOT NULL,
    version      int NOT NULL,
    channel      text NOT NULL,        -- the outbox channel, the area channel, or partner_<channel>
    attempted_at timestamptz NOT NULL,
    PRIMARY KEY (warning_id, version, channel),
    FOREIGN KEY (warning_id, version) REFERENCES svc.warning_version (warning_id, version)
);
