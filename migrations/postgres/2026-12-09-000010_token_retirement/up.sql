-- Retiring a non-primary token: it leaves its slot (slot NULL, retired_at set), so the slot is free
-- for a new token while the row, and with it the history, stays. UNIQUE (site_id, slot) ignores
-- NULLs, so any number of retired tokens sit beside the ten slots; the 10-token limit still holds
-- under concurrency exactly as before (src/domain/slots.rs). A retired token is also inactive, so
-- introspection refuses it through the same digest lookup as any inactive token.
ALTER TABLE tokens ALTER COLUMN slot DROP NOT NULL;
ALTER TABLE tokens ADD COLUMN retired_at TIMESTAMP;
ALTER TABLE tokens ADD CONSTRAINT tokens_retired_have_no_slot
    CHECK ((slot IS NULL) = (retired_at IS NOT NULL));
ALTER TABLE tokens ADD CONSTRAINT tokens_retired_are_inactive
    CHECK (retired_at IS NULL OR NOT active);

ALTER TABLE token_events DROP CONSTRAINT token_events_event_check;
ALTER TABLE token_events ADD CONSTRAINT token_events_event_check
    CHECK (event IN ('created', 'validated', 'invalidated', 'regenerated',
                     'description_changed', 'retired'));

-- Each history line also records the token's description when it happened (descriptions change).
-- Lines written before this migration get the best the history tells: the description the last
-- `description_changed` before them set, else the token's current one when it never changed, else
-- NULL (unknown).
ALTER TABLE token_events ADD COLUMN description TEXT;

UPDATE token_events SET description = COALESCE(
    (SELECT changed.detail FROM token_events AS changed
     WHERE changed.token_id = token_events.token_id
       AND changed.event = 'description_changed'
       AND changed.id <= token_events.id
     ORDER BY changed.id DESC LIMIT 1),
    (SELECT tokens.description FROM tokens
     WHERE tokens.id = token_events.token_id
       AND NOT EXISTS (SELECT 1 FROM token_events AS changed
                       WHERE changed.token_id = token_events.token_id
                         AND changed.event = 'description_changed')));
