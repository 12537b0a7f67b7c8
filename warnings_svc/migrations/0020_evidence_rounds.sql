-- Evidence of reach per round (svc.area_delivery.again): a peer counts each task from zero, so the first
-- report of an escalation round (area SMS again) must not replace the figures of the round before. An
-- expiry's report is not reach and is not stored. Coverage takes the largest figure per target and area
-- over rounds and versions (warnings_svc.coverage.evidence): the rounds reach the same people.
ALTER TABLE svc.reach_evidence ADD COLUMN round smallint NOT NULL DEFAULT 0 CHECK (round >= 0);
ALTER TABLE svc.reach_evidence DROP CONSTRAINT reach_evidence_pkey;
ALTER TABLE svc.reach_evidence ADD PRIMARY KEY (warning_id, version, channel, target, area, kind, round);
