-- The parts of a delivery settled as its outcome is stored stay on the delivery's row. At full speed an
-- SMSC's receipts come before the batch's outcomes are stored (89-95 % of them in bench/fanout.py), and a
-- delivery whose every part has reached the handset is stored `delivered` at once: writing a map row per part
-- only so a receipt could find it cost PostgreSQL about 10 µs and the dispatcher about 5 µs per delivery
-- (bench/README.md). Such a delivery keeps its parts' message ids and the time its last part arrived here;
-- the others (a receipt still to come, a part failed, accepted only) are mapped in svc.delivery_part as before.
ALTER TABLE svc.delivery
    ADD COLUMN remote_ids text[],    -- the parts' message ids, when they are not in svc.delivery_part
    ADD COLUMN done_at timestamptz;  -- when its last part reached the handset or failed (the receipts' done date)
UPDATE svc.delivery d SET done_at = p.done_at
FROM (SELECT delivery_id, max(done_at) AS done_at FROM svc.delivery_part GROUP BY delivery_id) p
WHERE d.id = p.delivery_id AND d.state IN ('delivered', 'accepted', 'failed') AND p.done_at IS NOT NULL;

-- Every part sent, wherever it is kept: the one place to read parts from. For a part kept on its delivery's
-- row the receipt's own words are not kept (they all said DELIVRD: only that state maps to delivered) and
-- received_at is when the delivery was stored settled, just after its receipts came.
CREATE VIEW svc.sent_part AS
SELECT endpoint, remote_id, delivery_id, state, raw_state, error_code, done_at, received_at
FROM svc.delivery_part
UNION ALL
SELECT d.endpoint, p.remote_id, d.id, 'delivered', 'DELIVRD', '', d.done_at, d.final_at
FROM svc.delivery d CROSS JOIN unnest(d.remote_ids) AS p (remote_id)
WHERE d.remote_ids IS NOT NULL;
