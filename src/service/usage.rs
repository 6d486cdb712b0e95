//! `last_used_at`, recorded without writing on the request path: introspection notes the use in
//! memory, and a background task flushes the batch every few seconds (`server`).
//!
//! Once a token value's use is written, later uses wait for a quiet time of about one
//! `resolution` (`--usage-resolution-secs`, a minute by default); its end writes the latest use
//! seen in it, which starts the next. So a token in steady use costs one row write per resolution
//! instead of one per flush, and `last_used_at` is at most a resolution plus a flush interval
//! behind. What a site manager reads from it ("still in use?") needs no finer time, and on SQLite
//! with a million tokens, rewriting every busy token's scattered row on every flush was the
//! largest part of introspection's latency tail (docs/performance.md, "After the eighth fix").

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};

use chrono::{NaiveDateTime, TimeDelta};

use crate::store::{Store, StoreError};

/// When this many tokens have a use due, the recorder asks for a flush at once, so memory stays
/// bounded.
pub const MAX_PENDING: usize = 100_000;

/// Most token values known at a flush. Beyond it, quiet times that hold no use back end early
/// (the value is forgotten), and values written while more are known are forgotten rather than
/// given a quiet time: that costs writes, never a use.
const MAX_REMEMBERED: usize = 100_000;

/// A quiet time is the resolution less 0 to 7 thirty-seconds of it, picked from the token id and
/// the nanoseconds of its latest use, so tokens first written in the same flush (every busy token
/// after a restart) do not come due together at every resolution but drift apart.
const SPREAD_STEPS: u32 = 8;
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
    /// The ids of the `Due` entries, each once.
    due: Vec<i64>,
    /// When each quiet time ends, earliest first. A listing whose entry is no longer quiet until
    /// that time (regenerated since) is skipped. Listings are added only for written uses, so an
    /// outage (every write refused) adds none.
    quiet_ends: BinaryHeap<Reverse<(NaiveDateTime, i64)>>,
}

/// What this node knows of one token value's use.
#[derive(Debug)]
struct TokenUse {
    /// Which value: regenerating keeps the token's id and sets a new `generated_at`, and the new
    /// value's first use must not wait out the old value's quiet time.
    generated_at: NaiveDateTime,
    /// The latest use seen, written or not.
    latest: NaiveDateTime,
    state: UseState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UseState {
    /// `latest` goes in the next batch.
    Due,
    /// In a batch being written; later uses wait, as in a quiet time.
    Writing,
    /// `written` is in the database; later uses wait until `until`.
    Quiet {
        written: NaiveDateTime,
        until: NaiveDateTime,
    },
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

    /// Notes a use of the token value generated at `generated_at`; returns `true` when this use
    /// filled the batch, which should be flushed now (once: not again on every use while it is
    /// full, say while the database refuses it).
    pub fn record(&self, token_id: i64, generated_at: NaiveDateTime, at: NaiveDateTime) -> bool {
        let mut uses = self.lock();
        let became_due = uses.note(PendingUse {
            token_id,
            generated_at,
            at,
        });
        became_due && uses.due.len() == MAX_PENDING
    }

    /// How many tokens have a use due in the next batch.
    pub fn due(&self) -> usize {
        self.lock().due.len()
    }

    /// Writes the uses `flush` selects at `now`, the time quiet times are measured against. On
    /// failure the batch is due again (merged with newer uses), so a database outage delays usage
    /// times but does not lose them.
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
        let written = store.record_token_use(&rows);
        self.settle(&batch, now, written.is_ok());
        written.map(|()| batch.len())
    }

    /// Ends the quiet times that are over, then moves every due use to `Writing`. Over: ended at
    /// `now`, or ending more than a resolution after it (the wall clock was set back), or every
    /// one for [`Flush::Final`]; and while more than [`MAX_REMEMBERED`] values are known, the
    /// earliest, up to the first that holds a use back.
    fn take_batch(&self, now: NaiveDateTime, flush: Flush) -> Vec<PendingUse> {
        let mut uses = self.lock();
        let uses = &mut *uses;
        let set_back_beyond = now.checked_add_signed(self.resolution);
        while let Some(&Reverse((ends, token_id))) = uses.quiet_ends.peek() {
            let over = ends <= now
                || set_back_beyond.is_some_and(|limit| ends > limit)
                || flush == Flush::Final;
            if !over && uses.by_token.len() <= MAX_REMEMBERED {
                break;
            }
            let holds_back = uses.holds_back(token_id, ends);
            if !over && holds_back == Some(true) {
                break;
            }
            uses.quiet_ends.pop();
            if let Some(holds_back) = holds_back {
                uses.end_quiet_time(token_id, holds_back);
            }
        }
        let mut batch = Vec::with_capacity(uses.due.len());
        for &token_id in &uses.due {
            let Some(token) = uses.by_token.get_mut(&token_id) else {
                continue;
            };
            token.state = UseState::Writing;
            batch.push(PendingUse {
                token_id,
                generated_at: token.generated_at,
                at: token.latest,
            });
        }
        uses.due.clear();
        batch
    }

    /// After the batch's write: each written use starts a quiet time (or, while more than
    /// [`MAX_REMEMBERED`] values are known, its value is forgotten); a refused use is due again,
    /// with any later use its `Writing` held back. A use of a value regenerated since is not the
    /// new value's, and is left alone.
    fn settle(&self, batch: &[PendingUse], now: NaiveDateTime, written: bool) {
        let mut uses = self.lock();
        let uses = &mut *uses;
        for used in batch {
            let remember = uses.by_token.len() <= MAX_REMEMBERED;
            let Entry::Occupied(mut entry) = uses.by_token.entry(used.token_id) else {
                continue;
            };
            let token = entry.get_mut();
            if token.generated_at != used.generated_at || token.state != UseState::Writing {
                continue;
            }
            if !written {
                token.state = UseState::Due;
                uses.due.push(used.token_id);
            } else if remember {
                let until = now
                    .checked_add_signed(self.quiet_time(used.token_id, token.latest))
                    .unwrap_or(NaiveDateTime::MAX);
                token.state = UseState::Quiet {
                    written: used.at,
                    until,
                };
                uses.quiet_ends.push(Reverse((until, used.token_id)));
            } else if token.latest > used.at {
                token.state = UseState::Due;
                uses.due.push(used.token_id);
            } else {
                entry.remove();
            }
        }
    }

    /// The resolution, shortened by a spread step (see [`SPREAD_STEPS`]).
    fn quiet_time(&self, token_id: i64, latest: NaiveDateTime) -> TimeDelta {
        let mixed = token_id.unsigned_abs() ^ u64::from(latest.and_utc().timestamp_subsec_nanos());
        let step = (mixed % u64::from(SPREAD_STEPS)) as i32;
        self.resolution - self.resolution / SPREAD_STEP_DIVISOR * step
    }

    fn lock(&self) -> MutexGuard<'_, Uses> {
        self.uses.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Uses {
    /// Due at once unless the value's use is being written or in its quiet time (whose end then
    /// writes it); returns whether it became due. Dropped: a use of an older value than the one
    /// known, and a use from before the value was generated (another node's clock behind this
    /// one's; the write would refuse it too).
    fn note(&mut self, used: PendingUse) -> bool {
        if used.at < used.generated_at {
            return false;
        }
        let token = match self.by_token.entry(used.token_id) {
            Entry::Vacant(entry) => {
                self.due.push(used.token_id);
                entry.insert(TokenUse::due(used));
                return true;
            }
            Entry::Occupied(entry) => entry.into_mut(),
        };
        if used.generated_at < token.generated_at {
            return false;
        }
        if used.generated_at > token.generated_at {
            let listed = token.state == UseState::Due;
            *token = TokenUse::due(used);
            if !listed {
                self.due.push(used.token_id);
            }
            return !listed;
        }
        token.latest = token.latest.max(used.at);
        false
    }

    /// Whether the quiet time listed as ending at `ends` holds a use back; `None` if the listing
    /// is stale (the entry is gone, or no longer quiet until then).
    fn holds_back(&self, token_id: i64, ends: NaiveDateTime) -> Option<bool> {
        match self.by_token.get(&token_id)? {
            TokenUse {
                latest,
                state: UseState::Quiet { written, until },
                ..
            } if *until == ends => Some(latest > written),
            _ => None,
        }
    }

    /// Ends the current quiet time: the use it held back becomes due, or with none the value is
    /// forgotten until its next use.
    fn end_quiet_time(&mut self, token_id: i64, holds_back: bool) {
        if !holds_back {
            self.by_token.remove(&token_id);
        } else if let Some(token) = self.by_token.get_mut(&token_id) {
            token.state = UseState::Due;
            self.due.push(token_id);
        }
    }
}

impl TokenUse {
    fn due(first: PendingUse) -> Self {
        Self {
            generated_at: first.generated_at,
            latest: first.at,
            state: UseState::Due,
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

    /// With whole-second uses, token ids 8, 16, 24... have the full resolution as their quiet
    /// time and ids 7, 15, 23... the shortest, 60 s less 7/32 of it: 46.875 s.
    fn minute_resolution() -> UsageRecorder {
        UsageRecorder::new(TimeDelta::seconds(60))
    }

    /// (token id, time) of each use a flush at `now` writes, in id order; the database takes it.
    fn batch(recorder: &UsageRecorder, now: i64, flush: Flush) -> Vec<(i64, NaiveDateTime)> {
        let taken = recorder.take_batch(at(now), flush);
        recorder.settle(&taken, at(now), true);
        let mut batch: Vec<_> = taken.iter().map(|used| (used.token_id, used.at)).collect();
        batch.sort();
        batch
    }

    fn next_batch(recorder: &UsageRecorder, now: i64) -> Vec<(i64, NaiveDateTime)> {
        batch(recorder, now, Flush::Periodic)
    }

    fn remembered(recorder: &UsageRecorder) -> usize {
        recorder.lock().by_token.len()
    }

    fn quiet_listings(recorder: &UsageRecorder) -> usize {
        recorder.lock().quiet_ends.len()
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
    fn uses_while_a_batch_is_written_wait_like_in_a_quiet_time() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(100));
        let writing = recorder.take_batch(at(101), Flush::Periodic);
        recorder.record(8, at(GENERATED), at(102));
        assert_eq!(recorder.due(), 0);
        recorder.settle(&writing, at(101), true);
        assert_eq!(next_batch(&recorder, 160), []);
        assert_eq!(next_batch(&recorder, 161), [(8, at(102))]);
    }

    #[test]
    fn quiet_times_are_spread_by_token_id_and_time() {
        let recorder = minute_resolution();
        for token_id in [8, 15] {
            recorder.record(token_id, at(GENERATED), at(100));
        }
        next_batch(&recorder, 100);
        for token_id in [8, 15] {
            recorder.record(token_id, at(GENERATED), at(120));
        }
        assert_eq!(next_batch(&recorder, 146), []);
        assert_eq!(next_batch(&recorder, 147), [(15, at(120))]);
        assert_eq!(next_batch(&recorder, 159), []);
        assert_eq!(next_batch(&recorder, 160), [(8, at(120))]);

        let one_nanosecond_later = at(100) + TimeDelta::nanoseconds(1);
        assert_eq!(
            recorder.quiet_time(8, one_nanosecond_later),
            TimeDelta::seconds(60) - TimeDelta::milliseconds(1_875),
            "the same token's next quiet time may take another step"
        );
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
    fn a_wall_clock_set_back_ends_quiet_times_it_would_stretch() {
        let recorder = minute_resolution();
        recorder.record(8, at(GENERATED), at(3_700));
        next_batch(&recorder, 3_700);
        recorder.record(8, at(GENERATED), at(3_710));
        assert_eq!(next_batch(&recorder, 3_730), []);
        assert_eq!(
            next_batch(&recorder, 3_705),
            [],
            "set back, but the quiet time still ends within a resolution"
        );
        assert_eq!(
            next_batch(&recorder, 3_650),
            [(8, at(3_710))],
            "set back so far that it would end more than a resolution away"
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
        recorder.settle(&refused, at(101), false);
        assert_eq!(recorder.due(), 2);
        assert_eq!(
            next_batch(&recorder, 202),
            [(8, at(102)), (16, at(201))],
            "the later use of 8, and the regenerated value's use of 16 only"
        );
    }

    #[test]
    fn an_outage_adds_no_quiet_time_listings() {
        let recorder = minute_resolution();
        for flush in 0..1_000 {
            recorder.record(8, at(GENERATED), at(100 + flush));
            let refused = recorder.take_batch(at(100 + flush), Flush::Periodic);
            recorder.settle(&refused, at(100 + flush), false);
        }
        assert_eq!(quiet_listings(&recorder), 0);
        assert_eq!(next_batch(&recorder, 1_100), [(8, at(1_099))]);
        assert_eq!(quiet_listings(&recorder), 1);
    }

    #[test]
    fn a_full_batch_asks_for_a_flush_once() {
        let recorder = minute_resolution();
        let flush_due: Vec<bool> = (0..MAX_PENDING as i64 + 10)
            .map(|token_id| recorder.record(token_id, at(GENERATED), at(100)))
            .collect();
        let asked: Vec<usize> = (0..flush_due.len()).filter(|&n| flush_due[n]).collect();
        assert_eq!(
            asked,
            [MAX_PENDING - 1],
            "when the batch fills, not on every use after"
        );
    }

    #[test]
    fn beyond_the_bound_values_are_forgotten_once_written_and_no_use_is_lost() {
        let recorder = minute_resolution();
        let known = (MAX_REMEMBERED + 10) as i64;
        for token_id in 0..known {
            recorder.record(token_id, at(GENERATED), at(100));
        }
        assert_eq!(next_batch(&recorder, 101).len(), known as usize);
        assert_eq!(
            remembered(&recorder),
            MAX_REMEMBERED,
            "the rest forgotten once written"
        );

        // 15 holds a use back in the quiet time that ends first (7 was forgotten); the bound
        // ends none early, and the new tokens are written and forgotten.
        recorder.record(15, at(GENERATED), at(102));
        for token_id in known..known + 3 {
            recorder.record(token_id, at(GENERATED), at(102));
        }
        assert_eq!(
            next_batch(&recorder, 103),
            [known, known + 1, known + 2].map(|token_id| (token_id, at(102)))
        );
        assert_eq!(remembered(&recorder), MAX_REMEMBERED);
        assert_eq!(
            next_batch(&recorder, 148),
            [(15, at(102))],
            "written when its quiet time ends"
        );
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
