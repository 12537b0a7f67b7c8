-- The warning service's own schema. Its tables (warnings, deliveries, outbox ...) arrive in later migrations.
CREATE SCHEMA IF NOT EXISTS svc;
