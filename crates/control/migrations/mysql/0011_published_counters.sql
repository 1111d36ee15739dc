-- Each concord process publishes its counters (applied and verified per table, lag) with
-- its heartbeat, so a console in another process shows them (JSON, NULL for role beats
-- that carry none).
ALTER TABLE role_heartbeats ADD COLUMN counters MEDIUMTEXT NULL;
