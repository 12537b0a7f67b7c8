-- The targets of the area channels a version is to be put out to, as the forecaster chose them before
-- approval ("channel/target", e.g. "area_sms/china-mobile"). NULL: the defaults of the version's level (each
-- target's configured levels). A Cancel still goes to every target where something may be out.
ALTER TABLE svc.warning_version ADD COLUMN area_targets text[]
    CHECK (area_targets IS NULL OR array_to_string(area_targets, ',') ~ '^([a-z][a-z0-9_]*/[a-z][a-z0-9_-]*(,|$))*$');
