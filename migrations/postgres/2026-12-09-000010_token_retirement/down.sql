-- Retired tokens have no slot to go back to: they and their history are deleted.
DELETE FROM tokens WHERE retired_at IS NOT NULL;
ALTER TABLE token_events DROP COLUMN description;
ALTER TABLE token_events DROP CONSTRAINT token_events_event_check;
ALTER TABLE token_events ADD CONSTRAINT token_events_event_check
    CHECK (event IN ('created', 'validated', 'invalidated', 'regenerated', 'description_changed'));
ALTER TABLE tokens DROP CONSTRAINT tokens_retired_are_inactive;
ALTER TABLE tokens DROP CONSTRAINT tokens_retired_have_no_slot;
ALTER TABLE tokens DROP COLUMN retired_at;
ALTER TABLE tokens ALTER COLUMN slot SET NOT NULL;
