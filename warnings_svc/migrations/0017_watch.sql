-- Escalation puts a warning version out again to a target of an area channel (`[coverage.escalation]`:
-- area SMS again, loudspeakers again): a delivery's identity gains the round it belongs to. Round 0 is the
-- version as issued; round n the n-th time escalation put it out again. Its idempotency key carries the
-- round ("warning-version/channel/target/again-n"), so a target that keeps keys sends it again instead of
-- taking it for a retry of the first.
ALTER TABLE svc.area_delivery ADD COLUMN again smallint NOT NULL DEFAULT 0 CHECK (again >= 0);
ALTER TABLE svc.area_delivery DROP CONSTRAINT area_delivery_warning_id_version_channel_target_msg_type_key;
ALTER TABLE svc.area_delivery ADD CONSTRAINT area_delivery_identity
    UNIQUE (warning_id, version, channel, target, msg_type, again);
