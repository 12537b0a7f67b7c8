-- Lighter writes per delivery: the outbox writes a row per person and several per message part, so every
-- check and index entry on those rows is paid by the hundred thousand (bench/README.md has the figures).
--
-- 1. A delivery's fan-out and version are checked once, when the fan-out is written (svc.fanout's key to
--    svc.warning_version); a delivery is written only by the expansion of the fan-out row it holds locked,
--    and neither fan-outs nor versions are ever deleted. Checking both again for every delivery cost the
--    server about a third of what expanding a fan-out costs it. The key to the person stays.
ALTER TABLE svc.delivery
    DROP CONSTRAINT delivery_fanout_id_fkey,
    DROP CONSTRAINT delivery_warning_id_version_fkey;

-- 2. Receipts are stored on the message-id map rows (svc.delivery_part) instead of a table of their own: a
--    part is one row, written by whichever comes first (the batch's results with the delivery it belongs to,
--    or its receipt, when the SMSC reports faster than the results are stored) and completed by the other.
--    Settling a delivery then reads its parts alone, without a join, and a receipt costs an update in place
--    instead of a second row and index entry (warnings_svc.outbox).
--
--    The map's key to svc.delivery goes too: a part row may exist before its delivery is known (a receipt
--    first), and map rows are written only for deliveries the same transaction has just updated under their
--    lease.
ALTER TABLE svc.delivery_part
    DROP CONSTRAINT delivery_part_delivery_id_fkey,
    ALTER COLUMN delivery_id DROP NOT NULL,  -- NULL: a receipt whose part's results are not stored yet
    ADD COLUMN state text
        CHECK (state IN ('delivered', 'accepted', 'en_route', 'expired', 'failed', 'unknown')),  -- NULL: no receipt
    ADD COLUMN raw_state text NOT NULL DEFAULT '',
    ADD COLUMN error_code text NOT NULL DEFAULT '',
    ADD COLUMN done_at timestamptz,
    ADD COLUMN received_at timestamptz;
-- room on each page for a receipt written on a part mapped before it, so the update stays on the page (HOT:
-- no new index entry). When the receipt comes first (usual at full speed: a batch's results are stored once
-- the whole batch is sent), the map's update sets the indexed delivery_id and cannot be HOT anyway.
ALTER TABLE svc.delivery_part SET (fillfactor = 80);

INSERT INTO svc.delivery_part (endpoint, remote_id, state, raw_state, error_code, done_at, received_at)
SELECT endpoint, remote_id, state, raw_state, error_code, done_at, received_at FROM svc.receipt
ON CONFLICT (endpoint, remote_id) DO UPDATE
SET state = excluded.state, raw_state = excluded.raw_state, error_code = excluded.error_code,
    done_at = excluded.done_at, received_at = excluded.received_at;
DROP TABLE svc.receipt;
