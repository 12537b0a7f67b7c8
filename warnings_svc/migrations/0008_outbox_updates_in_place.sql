-- Updates in place for deliveries: a delivery is written three times or more (claimed, its outcome stored,
-- settled by its receipts), and PostgreSQL can rewrite a row on its own page without touching any index
-- (a HOT update) only when no indexed column changes, predicates of partial indexes included. `state` was in
-- both queue indexes' predicates and `lease_until` was indexed, so every write of every delivery added an
-- entry to each of its indexes (bench/README.md has the figures).
--
-- 1. Whether a delivery waits in the queue is its own column, `queued` (state 'pending'), and the queue's
--    index covers the rows where it is true: claiming a delivery and giving it back still change the index,
--    storing its outcome and settling it no longer do.
ALTER TABLE svc.delivery ADD COLUMN queued boolean NOT NULL DEFAULT true;
UPDATE svc.delivery SET queued = false WHERE state <> 'pending';
ALTER TABLE svc.delivery ADD CONSTRAINT delivery_queued CHECK (queued = (state = 'pending'));
DROP INDEX svc.delivery_ready;
CREATE INDEX delivery_ready ON svc.delivery (channel, priority, next_attempt_at, id) WHERE queued;

-- 2. Leases are rows of their own, one per claimed batch, with the deliveries it holds: renewing a batch's
--    lease writes one row instead of a thousand, and a delivery keeps only the name of the lease it is sent
--    under (not indexed). The dispatcher that stores the batch's outcomes deletes its lease; the reaper
--    returns the deliveries of a lease that ran out to the queue.
CREATE TABLE svc.delivery_lease (
    lease text PRIMARY KEY,
    until timestamptz NOT NULL,
    ids   bigint[] NOT NULL
);
INSERT INTO svc.delivery_lease (lease, until, ids)
SELECT lease_owner, max(lease_until), array_agg(id ORDER BY id)
FROM svc.delivery WHERE state = 'sending' GROUP BY lease_owner;
DROP INDEX svc.delivery_leased;
ALTER TABLE svc.delivery
    DROP CONSTRAINT delivery_check,
    DROP COLUMN lease_until,
    ADD CONSTRAINT delivery_leased CHECK ((state = 'sending') = (lease_owner IS NOT NULL));

-- 3. Room on each page for the next versions of its rows: an update stays on its page only if there is space.
ALTER TABLE svc.delivery SET (fillfactor = 70);

-- 4. The message-id map's index by delivery holds only the parts of deliveries stored `sent` (some receipt
--    still to come), the only ones a receipt can settle. A delivery whose every receipt came with its outcomes
--    is stored settled, and its parts (most of them, at full speed) need no entry.
ALTER TABLE svc.delivery_part ADD COLUMN unsettled boolean NOT NULL DEFAULT true;
ALTER TABLE svc.delivery_part ALTER COLUMN unsettled SET DEFAULT false;
DROP INDEX svc.delivery_part_delivery;
CREATE INDEX delivery_part_delivery ON svc.delivery_part (delivery_id) WHERE unsettled;
