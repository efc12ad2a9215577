-- A backfill cursor belongs to the `--since` of the run that saved it (docs/connectors.md,
-- "Backfill"): a run with another `--since` (or none) reads another window of the provider's
-- lists, where the saved position means something else (PayPal's names a 31-day window of its
-- own since, Stripe's and Xendit's an object of a filtered list), so it starts the list over
-- instead of resuming.
--
-- The cursors saved before this column have no known `--since`: they are cleared, so every
-- list is read again from its start once (its unchanged objects skipped by id, nothing
-- appended twice).

ALTER TABLE provider_sync_cursors
    -- The run's `--since`; NULL: a run without one.
    ADD COLUMN since timestamptz;

UPDATE provider_sync_cursors SET cursor = NULL WHERE cursor IS NOT NULL;
