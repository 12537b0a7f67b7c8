-- Warnings written before times were checked (issue 16) may hold an onset or expiry of -infinity/infinity, or
-- one thousands of years away (a request with year 1 or 9999). No program can read such a row back, so every
-- list that contains it failed, and the forecaster could neither edit nor discard it. Only versions that were
-- never issued can hold one: an issued version's times are in its signed CAP document.
--
-- This brings each such time back to the moment the version was written (expiry: a day after its onset), so
-- the draft can be read again, and says so in its note. The forecaster then edits or discards it as usual,
-- and that change goes into the audit log.
CREATE TEMPORARY TABLE repaired_warning_version ON COMMIT DROP AS
WITH unissued AS (
    SELECT warning_id, version, onset, expires, created_at,
           interval '10 years' AS sane
      FROM svc.warning_version
     WHERE status IN ('draft', 'pending_approval', 'returned')
), onset_repaired AS (
    SELECT *, CASE WHEN isfinite(onset) AND onset BETWEEN created_at - sane AND created_at + sane
                   THEN onset ELSE created_at END AS new_onset
      FROM unissued
)
SELECT warning_id, version, onset AS old_onset, expires AS old_expires, new_onset,
       CASE WHEN isfinite(expires) AND expires > new_onset AND expires <= created_at + sane
            THEN expires ELSE new_onset + interval '1 day' END AS new_expires
  FROM onset_repaired
 WHERE NOT isfinite(onset) OR NOT isfinite(expires)
    OR onset NOT BETWEEN created_at - sane AND created_at + sane
    OR expires NOT BETWEEN created_at - sane AND created_at + sane;

UPDATE svc.warning_version v
   SET onset = r.new_onset,
       expires = r.new_expires,
       note = concat_ws(E'\n', nullif(v.note, ''),
                        format('Times repaired by an upgrade: onset was %s, expires was %s; check them before '
                               'submitting.', r.old_onset, r.old_expires))
  FROM repaired_warning_version r
 WHERE v.warning_id = r.warning_id AND v.version = r.version;

-- The warning's public face follows its current version when that is the one repaired.
UPDATE svc.warning w
   SET onset = r.new_onset, expires = r.new_expires
  FROM repaired_warning_version r
 WHERE w.id = r.warning_id AND w.current_version = r.version;
