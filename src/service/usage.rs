//! `last_used_at`, recorded without writing on the request path: introspection notes the use in
//! memory, and a background task flushes the batch every few seconds (`server`).
//!
//! Once a token value's use is written, later uses are not written for about one `resolution`
//! (`--usage-resolution-secs`, a minute by default); when that quiet time ends, the latest use
//! seen in it is written, which starts the next. So a token in steady use costs one row write per
//! resolution instead of one per flush, and `last_used_at` is at most a resolution plus a flush
//! interval behind. What a site manager reads from it ("still in use?") needs no finer time, and
//! on SQLite with a million tokens, rewriting every busy token's scattered row on every flush was
//! the largest part of introspection's latency tail (docs/performance.md, "After the seventh
//! fix").

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};

use chrono::{NaiveDateTime, TimeDelta};

use crate::store::{Store, StoreError};

/// Above this many tokens with a use due, a flush is due at once, so memory stays bounded.
pub const MAX_PENDING: usize = 100_000;

/// Most token values remembered in their quiet time; beyond it the earliest quiet times end
/// early, which costs writes and loses no use.
const MAX_REMEMBERED: usize = 100_000;

/// Quiet times are shortened by up to 7/32 of the resolution, by token id, so that tokens first
/// written in the same flush (every busy token after a restart) do not all come due together
/// again at every resolution.
const SPREAD_STEPS: i64 = 8;
const SPREAD_STEP_DIVISOR: i32 = 32;

#[derive(Debug)]
pub struct UsageRecorder {
    resolution: TimeDelta,
    uses: Mutex<Uses>,
}

/// Which uses a flush writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Uses due now: first uses, and the latest use of each quiet time that has ended.
    Periodic,
    /// Before the process stops: also the latest use of every quiet time still running.
    Final,
}

#[derive(Debug, Default)]
struct Uses {
    by_token: HashMap<i64, TokenUse>,
    /// Ids whose entry is `due`.
    due: Vec<i64>,
    /// When each quiet time ends, earliest first. A listing whose time no longer matches its
    /// entry's (regenerated, or the write refused) is skipped.
    quiet_ends: BinaryHeap<Reverse<(NaiveDateTime, i64)>>,
}

/// What this node knows of one token value's use. `due` and `quiet_until` never hold together.
#[derive(Debug)]
struct TokenUse {
    /// Which value: regenerating keeps the token's id and sets a new `generated_at`, and the new
    /// value's first use must not wait out the old value's quiet time.
    generated_at: NaiveDateTime,
    /// The latest use seen, written or not.
    latest: NaiveDateTime,
    /// The use last handed to the database.
    written: Option<NaiveDateTime>,
    /// Until when later uses wait instead of being written; set by the flush that wrote one.
    quiet_until: Option<NaiveDateTime>,
    /// Whether `latest` goes in the next batch.
    due: bool,
}

/// One token value's use, as flushed.
#[derive(Debug, Clone, Copy)]
struct PendingUse {
    token_id: i64,
    generated_at: NaiveDateTime,
    at: NaiveDateTime,
}

impl UsageRecorder {
    /// `resolution` zero writes every use at the next flush.
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
        uses.note(PendingUse {
            token_id,
            generated_at,
            at,
        });
        uses.due.len() >= MAX_PENDING
    }

    /// How many tokens have a use due in the next batch.
    pub fn due(&self) -> usize {
        self.lock().due.len()
    }

    /// Writes the uses `flush` selects; `now` ends the quiet times that are over and starts those
    /// of the uses written. On failure the batch is due again (merged with newer uses), so a
    /// database outage delays usage times but does not lose them.
    pub fn flush(
        &self,
        store: &Store,
        now: NaiveDateTime,
        flush: Flush,
    ) -> Result<usize, StoreError> {
        let batch = self.take_batch(now, flush);
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

    /// Ends the quiet times that are over (all of them for [`Flush::Final`], and the earliest
    /// while more than [`MAX_REMEMBERED`] values are known), then takes every due use and starts
    /// its quiet time, or forgets the value once written while more than that are known.
    fn take_batch(&self, now: NaiveDateTime, flush: Flush) -> Vec<PendingUse> {
        let mut uses = self.lock();
        let uses = &mut *uses;
        while let Some(&Reverse((ends, token_id))) = uses.quiet_ends.peek() {
            let over = ends <= now || flush == Flush::Final || uses.by_token.len() > MAX_REMEMBERED;
            if !over {
                break;
            }
            uses.quiet_ends.pop();
            uses.end_quiet_time(token_id, ends);
        }
        let mut batch = Vec::with_capacity(uses.due.len());
        for token_id in std::mem::take(&mut uses.due) {
            let remember = uses.by_token.len() <= MAX_REMEMBERED;
            let Entry::Occupied(mut entry) = uses.by_token.entry(token_id) else {
                continue;
            };
            let token = entry.get_mut();
            batch.push(PendingUse {
                token_id,
                generated_at: token.generated_at,
                at: token.latest,
            });
            if !remember {
                entry.remove();
                continue;
            }
            let quiet_until = now
                .checked_add_signed(self.quiet_time(token_id))
                .unwrap_or(NaiveDateTime::MAX);
            token.due = false;
            token.written = Some(token.latest);
            token.quiet_until = Some(quiet_until);
            uses.quiet_ends.push(Reverse((quiet_until, token_id)));
        }
        batch
    }

    /// A batch the database did not take: due again, with any later use its quiet times held
    /// back. A use of a value regenerated since is dropped: it is not the new value's use.
    fn put_back(&self, batch: &[PendingUse]) {
        let mut uses = self.lock();
        for &used in batch {
            if let Some(token) = uses.by_token.get_mut(&used.token_id) {
                if token.generated_at == used.generated_at {
                    token.written = None;
                    token.quiet_until = None;
                }
            }
            uses.note(used);
        }
    }

    /// The resolution, shortened by the token's spread step.
    fn quiet_time(&self, token_id: i64) -> TimeDelta {
        let step = i32::try_from(token_id.rem_euclid(SPREAD_STEPS)).unwrap_or(0);
        self.resolution - self.resolution / SPREAD_STEP_DIVISOR * step
    }

    fn lock(&self) -> MutexGuard<'_, Uses> {
        self.uses.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Uses {
    /// Due at once unless the value is in its quiet time (then the quiet time's end writes it).
    /// Dropped: a use of an older value than the one known, and a use from before the value was
    /// generated (another node's clock behind this one's; the write would refuse it too).
    fn note(&mut self, used: PendingUse) {
        if used.at < used.generated_at {
            return;
        }
        let token = match self.by_token.entry(used.token_id) {
            Entry::Vacant(entry) => entry.insert(TokenUse::new(used)),
            Entry::Occupied(entry) => {
                let token = entry.into_mut();
                if used.generated_at < token.generated_at {
                    return;
                }
                if used.generated_at > token.generated_at {
                    let already_listed = token.due;
                    *token = TokenUse::new(used);
                    token.due = already_listed;
                }
                token
            }
        };
        token.latest = token.latest.max(used.at);
        if !token.due && token.quiet_until.is_none() {
            token.due = true;
            self.due.push(used.token_id);
        }
    }

    /// The quiet time listed as ending at `ends`: its latest use becomes due if it was not
    /// written, else the value is forgotten until its next use.
    fn end_quiet_time(&mut self, token_id: i64, ends: NaiveDateTime) {
        let Entry::Occupied(mut entry) = self.by_token.entry(token_id) else {
            return;
        };
        let token = entry.get_mut();
        if token.quiet_until != Some(ends) {
            return;
        }
        token.quiet_until = None;
        if token.written.is_some_and(|written| written < token.latest) {
            token.due = true;
            self.due.push(token_id);
        } else {
            entry.remove();
        }
    }
}

impl TokenUse {
    fn new(first: PendingUse) -> Self {
        Self {
            generated_at: first.generated_at,
            latest: first.at,
            written: None,
            quiet_until: None,
            due: false,
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

    /// Token ids 8, 16, 24... have the full resolution as their quiet time.
    fn minute_resolution() -> UsageRecorder {
        UsageRecorder::new(TimeDelta::seconds(60))
    }

    /// (token id, time) of each use the flush would write, in id order.
    fn batch(recorder: &UsageRecorder, now: i64, flush: Flush) -> Vec<(i64, NaiveDateTime)> {
        let mut batch: Vec<_> = recorder
            .take_batch(at(now), flush)
            .into_iter()
            .map(|used| (used.token_id, used.at))
            .collect();
        batch.sort();
        batch
    }

    fn next_batch(recorder: &UsageRecorder, now: i64) -> Vec<(i64, NaiveDateTime)> {
        batch(recorder, now, Flush::Periodic)
    }

    fn remembered(recorder: &UsageRecorder) -> usize {
        recorder.lock().by_token.len()
    }

    #[test]
    fn only_the_latest_use_per_token_is_kept() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(20));
        recorder.record(8, at(GENERATED), at(10));
        recorder.record(16, at(GENERATED), at(5));
        assert_eq!(recorder.due(), 2);
        assert_eq!(next_batch(&recorder, 30), [(8, at(20)), (16, at(5))]);
        assert_eq!(recorder.due(), 0);
    }

    #[test]
    fn uses_in_a_quiet_time_are_held_back_and_the_latest_is_written_when_it_ends() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, 101), [(8, at(100))]);
        recorder.record(8, at(GENERATED), at(130));
        recorder.record(8, at(GENERATED), at(150));
        assert_eq!(recorder.due(), 0, "in the quiet time");
        assert_eq!(next_batch(&recorder, 160), []);
        assert_eq!(next_batch(&recorder, 161), [(8, at(150))], "its end");
        assert_eq!(
            next_batch(&recorder, 221),
            [],
            "nothing new in the next one"
        );
        assert_eq!(remembered(&recorder), 0, "an idle value is forgotten");
        recorder.record(8, at(GENERATED), at(230));
        assert_eq!(
            next_batch(&recorder, 231),
            [(8, at(230))],
            "a first use again"
        );
    }

    #[test]
    fn quiet_times_are_spread_by_token_id() {
        let recorder = minute_resolution();
        for token_id in [8, 15] {
            recorder.record(token_id, at(GENERATED), at(100));
        }
        next_batch(&recorder, 100);
        for token_id in [8, 15] {
            recorder.record(token_id, at(GENERATED), at(120));
        }
        // 60 s less 7/32 of it: 46.875 s.
        assert_eq!(next_batch(&recorder, 147), [(15, at(120))]);
        assert_eq!(next_batch(&recorder, 160), [(8, at(120))]);
    }

    #[test]
    fn zero_resolution_writes_every_use_at_the_next_flush() {
        let recorder = UsageRecorder::new(TimeDelta::zero());
        recorder.record(8, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, 100), [(8, at(100))]);
        recorder.record(8, at(GENERATED), at(101));
        assert_eq!(next_batch(&recorder, 102), [(8, at(101))]);
        assert_eq!(next_batch(&recorder, 104), []);
        assert_eq!(remembered(&recorder), 0);
    }

    #[test]
    fn a_final_flush_writes_the_uses_held_back_by_running_quiet_times() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(100));
        recorder.record(16, at(GENERATED), at(100));
        next_batch(&recorder, 100);
        recorder.record(8, at(GENERATED), at(110));
        recorder.record(24, at(GENERATED), at(111));
        assert_eq!(
            batch(&recorder, 112, Flush::Final),
            [(8, at(110)), (24, at(111))]
        );
    }

    #[test]
    fn a_regenerated_value_is_written_at_once_and_the_old_values_uses_are_dropped() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, 101), [(8, at(100))]);
        recorder.record(8, at(105), at(110));
        assert_eq!(recorder.due(), 1, "the new value's first use");
        recorder.record(8, at(GENERATED), at(111));
        assert_eq!(next_batch(&recorder, 112), [(8, at(110))]);
        assert_eq!(next_batch(&recorder, 200), [], "the old quiet time's end");

        recorder.record(16, at(GENERATED), at(120));
        recorder.record(16, at(115), at(121));
        assert_eq!(recorder.due(), 1, "listed once");
        assert_eq!(next_batch(&recorder, 122), [(16, at(121))]);
    }

    #[test]
    fn a_use_from_before_its_value_was_generated_is_dropped() {
        let recorder = minute_resolution();
        recorder.record(8, at(100), at(99));
        assert_eq!(recorder.due(), 0);
        assert_eq!(remembered(&recorder), 0);
    }

    #[test]
    fn a_batch_the_database_refused_is_due_again_with_the_uses_held_back_meanwhile() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(100));
        recorder.record(16, at(GENERATED), at(100));
        let refused = recorder.take_batch(at(101), Flush::Periodic);
        recorder.record(8, at(GENERATED), at(102));
        recorder.record(16, at(200), at(201));
        recorder.put_back(&refused);
        assert_eq!(recorder.due(), 2);
        assert_eq!(
            next_batch(&recorder, 202),
            [(8, at(102)), (16, at(201))],
            "the later use of 8, and the regenerated value's use of 16 only"
        );
        assert_eq!(next_batch(&recorder, 262), [], "stale quiet-time listings");
    }

    #[test]
    fn a_full_batch_asks_for_a_flush_and_memory_stays_bounded() {
        let recorder = minute_resolution();
        let known = (MAX_REMEMBERED + 10) as i64;
        let flush_due: Vec<bool> = (0..known)
            .map(|token_id| recorder.record(token_id, at(GENERATED), at(100)))
            .collect();
        assert_eq!(flush_due.iter().position(|&due| due), Some(MAX_PENDING - 1));
        assert_eq!(next_batch(&recorder, 101).len(), known as usize);
        assert_eq!(
            remembered(&recorder),
            MAX_REMEMBERED,
            "the rest forgotten once written"
        );
        // Held back by the quiet times that end first (the shortest, ids 7 mod 8; 7 itself was
        // forgotten), then three new tokens push past the bound.
        for token_id in [15, 23, 31] {
            recorder.record(token_id, at(GENERATED), at(102));
        }
        for token_id in known..known + 3 {
            recorder.record(token_id, at(GENERATED), at(102));
        }
        assert_eq!(
            next_batch(&recorder, 103),
            [15, 23, 31, known, known + 1, known + 2].map(|token_id| (token_id, at(102))),
            "uses held back by quiet times ended early are written, not lost"
        );
        assert_eq!(remembered(&recorder), MAX_REMEMBERED);
    }

    #[test]
    fn a_resolution_beyond_the_calendar_holds_uses_back_without_overflowing() {
        let recorder = UsageRecorder::new(TimeDelta::MAX);
        recorder.record(8, at(GENERATED), at(100));
        assert_eq!(next_batch(&recorder, 101), [(8, at(100))]);
        recorder.record(8, at(GENERATED), at(102));
        let end_of_time = NaiveDateTime::MAX.and_utc().timestamp();
        assert_eq!(next_batch(&recorder, end_of_time - 1), []);
        assert_eq!(batch(&recorder, 103, Flush::Final), [(8, at(102))]);
    }
}
