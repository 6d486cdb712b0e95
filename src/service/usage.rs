//! `last_used_at`, recorded without writing on the request path: introspection notes the use in
//! memory, and a background task flushes the batch every few seconds (`server`), so the database
//! sees at most one write per token per interval and the delay is bounded by the interval.
//!
//! A token in steady use is written again only once its last written use is a `resolution` old
//! (`--usage-resolution-secs`, a minute by default): `last_used_at` is then at most a resolution
//! plus a flush interval behind. What a site manager reads from it ("still in use?") needs no
//! finer time, and it spares the database a rewrite of every busy token's row on every flush: on
//! SQLite with a million tokens, those scattered page writes were the worst of introspection's
//! latency tail (docs/performance.md, "After the eighth fix").

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{NaiveDateTime, TimeDelta};

use crate::store::{Store, StoreError};

/// Above this many pending tokens a flush is due at once, so memory stays bounded. It also
/// bounds how many recently written tokens are remembered for the resolution.
pub const MAX_PENDING: usize = 100_000;

#[derive(Debug)]
pub struct UsageRecorder {
    resolution: TimeDelta,
    uses: Mutex<Uses>,
}

#[derive(Debug, Default)]
struct Uses {
    by_token: HashMap<i64, TokenUse>,
    /// How many of `by_token` have a pending use.
    pending: usize,
}

/// What this node knows of one token value's use.
#[derive(Debug)]
struct TokenUse {
    /// Which value: regenerating keeps the token's id and sets a new `generated_at`, and the new
    /// value's first use must not wait out the old value's resolution.
    generated_at: NaiveDateTime,
    /// The use last handed to the database, while it is less than a resolution old.
    written: Option<NaiveDateTime>,
    /// The latest use seen, written or not: what a batch the database refused must write.
    latest: NaiveDateTime,
    /// Whether `latest` is due in the next batch.
    pending: bool,
}

/// One token's use, as flushed.
#[derive(Debug, Clone, Copy)]
struct PendingUse {
    token_id: i64,
    generated_at: NaiveDateTime,
    at: NaiveDateTime,
}

impl UsageRecorder {
    /// `resolution` zero writes every use (at most once per flush).
    pub fn new(resolution: TimeDelta) -> Self {
        Self {
            resolution,
            uses: Mutex::default(),
        }
    }

    /// Notes a use of the token value generated at `generated_at`; returns `true` when the batch
    /// is full and should be flushed now.
    pub fn record(&self, token_id: i64, generated_at: NaiveDateTime, at: NaiveDateTime) -> bool {
        let mut uses = self.lock();
        uses.note(
            self.resolution,
            PendingUse {
                token_id,
                generated_at,
                at,
            },
        );
        uses.pending >= MAX_PENDING
    }

    /// How many tokens have a use not written yet.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Writes the pending batch. On failure the batch is put back (merged with newer uses), so a
    /// database outage delays usage times but does not lose them.
    pub fn flush(&self, store: &Store, now: NaiveDateTime) -> Result<usize, StoreError> {
        let batch = self.take_batch(now);
        if batch.is_empty() {
            return Ok(0);
        }
        let rows: Vec<(i64, NaiveDateTime)> = batch.iter().map(|u| (u.token_id, u.at)).collect();
        match store.record_token_use(&rows) {
            Ok(()) => Ok(batch.len()),
            Err(error) => {
                self.put_back(&batch);
                Err(error)
            }
        }
    }

    /// Moves every pending use to `written` and forgets writes a resolution old, which suppress
    /// nothing any more. If more than [`MAX_PENDING`] recent writes remain, all are forgotten:
    /// the resolution only saves writes, and memory must stay bounded.
    fn take_batch(&self, now: NaiveDateTime) -> Vec<PendingUse> {
        let mut uses = self.lock();
        let mut batch = Vec::with_capacity(uses.pending);
        uses.by_token.retain(|&token_id, token| {
            if token.pending {
                token.pending = false;
                token.written = Some(token.latest);
                batch.push(PendingUse {
                    token_id,
                    generated_at: token.generated_at,
                    at: token.latest,
                });
            }
            token
                .written
                .is_some_and(|written| within(written, self.resolution, now))
        });
        uses.pending = 0;
        if uses.by_token.len() > MAX_PENDING {
            uses.by_token = HashMap::new();
        }
        batch
    }

    /// A batch the database did not take: pending again (with any later use the batch's writes
    /// suppressed meanwhile), and not counted as written. A use of a value regenerated since is
    /// dropped: it is not the new value's use.
    fn put_back(&self, batch: &[PendingUse]) {
        let mut uses = self.lock();
        for &used in batch {
            if let Some(token) = uses.by_token.get_mut(&used.token_id) {
                if token.generated_at == used.generated_at {
                    token.written = None;
                }
            }
            uses.note(self.resolution, used);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Uses> {
        self.uses.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Uses {
    /// Pending unless a use of the same value was written less than `resolution` before it; a
    /// use of an older value than the one known is dropped.
    fn note(&mut self, resolution: TimeDelta, used: PendingUse) {
        let token = match self.by_token.entry(used.token_id) {
            Entry::Vacant(entry) => entry.insert(TokenUse::new(used)),
            Entry::Occupied(entry) => {
                let token = entry.into_mut();
                if used.generated_at < token.generated_at {
                    return;
                }
                if used.generated_at > token.generated_at {
                    // The old value's pending use is not the new value's (the write would refuse
                    // it too: `generated_at <= used_at`).
                    if token.pending {
                        self.pending -= 1;
                    }
                    *token = TokenUse::new(used);
                }
                token
            }
        };
        token.latest = token.latest.max(used.at);
        let suppressed = token
            .written
            .is_some_and(|written| within(written, resolution, used.at));
        if !token.pending && !suppressed {
            token.pending = true;
            self.pending += 1;
        }
    }
}

/// Whether `at` is less than `resolution` after `written`; a resolution beyond the calendar never
/// ends.
fn within(written: NaiveDateTime, resolution: TimeDelta, at: NaiveDateTime) -> bool {
    written
        .checked_add_signed(resolution)
        .is_none_or(|until| at < until)
}

impl TokenUse {
    fn new(first: PendingUse) -> Self {
        Self {
            generated_at: first.generated_at,
            written: None,
            latest: first.at,
            pending: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        DateTime::from_timestamp(seconds, 0).unwrap().naive_utc()
    }

    const GENERATED: i64 = 1;

    fn minute_resolution() -> UsageRecorder {
        UsageRecorder::new(TimeDelta::seconds(60))
    }

    /// (token id, time) of each use the next flush would write, in id order.
    fn next_batch(recorder: &UsageRecorder, now: NaiveDateTime) -> Vec<(i64, NaiveDateTime)> {
        let mut batch: Vec<_> = recorder
            .take_batch(now)
            .into_iter()
            .map(|used| (used.token_id, used.at))
            .collect();
        batch.sort();
        batch
    }

    #[test]
    fn only_the_latest_use_per_token_is_kept() {
        let recorder = minute_resolution();
        recorder.record(1, at(GENERATED), at(20));
        recorder.record(1, at(GENERATED), at(10));
        recorder.record(2, at(GENERATED), at(5));
        assert_eq!(recorder.pending(), 2);
        assert_eq!(next_batch(&recorder, at(30)), [(1, at(20)), (2, at(5))]);
        assert_eq!(recorder.pending(), 0);
    }

    #[test]
    fn a_use_is_written_again_once_the_last_written_one_is_a_resolution_old() {
        let recorder = minute_resolution();
        recorder.record(1, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, at(101)), [(1, at(100))]);
        recorder.record(1, at(GENERATED), at(159));
        assert_eq!(recorder.pending(), 0, "within the resolution");
        assert_eq!(next_batch(&recorder, at(160)), []);
        recorder.record(1, at(GENERATED), at(160));
        assert_eq!(next_batch(&recorder, at(161)), [(1, at(160))]);
    }

    #[test]
    fn zero_resolution_writes_every_use_and_remembers_nothing() {
        let recorder = UsageRecorder::new(TimeDelta::zero());
        recorder.record(1, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, at(100)), [(1, at(100))]);
        assert!(recorder.lock().by_token.is_empty());
        recorder.record(1, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, at(100)), [(1, at(100))]);
    }

    #[test]
    fn a_regenerated_value_is_written_at_once_and_the_old_values_uses_are_dropped() {
        let recorder = minute_resolution();
        recorder.record(1, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, at(101)), [(1, at(100))]);
        recorder.record(1, at(105), at(110));
        assert_eq!(recorder.pending(), 1, "the new value's first use");
        recorder.record(1, at(GENERATED), at(111));
        assert_eq!(next_batch(&recorder, at(112)), [(1, at(110))]);

        recorder.record(2, at(GENERATED), at(120));
        recorder.record(2, at(115), at(121));
        assert_eq!(
            recorder.pending(),
            1,
            "the old value's pending use is not counted"
        );
        assert_eq!(next_batch(&recorder, at(122)), [(2, at(121))]);
    }

    #[test]
    fn a_batch_the_database_refused_is_pending_again_and_suppresses_nothing() {
        let recorder = minute_resolution();
        recorder.record(1, at(GENERATED), at(100));
        recorder.record(2, at(GENERATED), at(100));
        let refused = recorder.take_batch(at(101));
        recorder.record(1, at(GENERATED), at(102));
        recorder.record(2, at(200), at(201));
        recorder.put_back(&refused);
        assert_eq!(recorder.pending(), 2);
        assert_eq!(
            next_batch(&recorder, at(202)),
            [(1, at(102)), (2, at(201))],
            "the newer use of 1, and the regenerated value's use of 2 only"
        );
    }

    #[test]
    fn writes_a_resolution_old_are_forgotten() {
        let recorder = minute_resolution();
        recorder.record(1, at(GENERATED), at(100));
        recorder.record(2, at(GENERATED), at(130));
        next_batch(&recorder, at(131));
        assert_eq!(recorder.lock().by_token.len(), 2);
        next_batch(&recorder, at(160));
        assert_eq!(recorder.lock().by_token.len(), 1);
        next_batch(&recorder, at(190));
        assert!(recorder.lock().by_token.is_empty());
    }

    #[test]
    fn a_full_batch_asks_for_a_flush_and_memory_stays_bounded() {
        let recorder = minute_resolution();
        let flush_due: Vec<bool> = (0..=MAX_PENDING as i64)
            .map(|token_id| recorder.record(token_id, at(GENERATED), at(100)))
            .collect();
        assert_eq!(flush_due.iter().position(|&due| due), Some(MAX_PENDING - 1));
        assert_eq!(recorder.take_batch(at(101)).len(), MAX_PENDING + 1);
        assert!(
            recorder.lock().by_token.is_empty(),
            "more recent writes than MAX_PENDING are forgotten"
        );
    }

    #[test]
    fn a_resolution_beyond_the_calendar_suppresses_without_overflowing() {
        let recorder = UsageRecorder::new(TimeDelta::MAX);
        recorder.record(1, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, at(101)), [(1, at(100))]);
        recorder.record(1, at(GENERATED), NaiveDateTime::MAX);
        assert_eq!(next_batch(&recorder, NaiveDateTime::MAX), []);
    }
}
