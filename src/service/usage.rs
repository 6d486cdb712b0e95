//! `last_used_at`, recorded without writing on the request path: introspection notes the use in
//! memory, and a background task flushes the batch every few seconds (`server`), so the database
//! sees at most one write per token per interval and the delay is bounded by the interval.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDateTime;

use crate::store::{Store, StoreError};

/// Above this many pending tokens a flush is due at once, so memory stays bounded.
pub const MAX_PENDING: usize = 100_000;

#[derive(Debug, Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<i64, NaiveDateTime>>,
}

impl UsageRecorder {
    /// Notes a use; returns `true` when the batch is full and should be flushed now.
    pub fn record(&self, token_id: i64, at: NaiveDateTime) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let latest = pending.entry(token_id).or_insert(at);
        if *latest < at {
            *latest = at;
        }
        pending.len() >= MAX_PENDING
    }

    /// How many tokens have a use not written yet.
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Writes the pending batch. On failure the batch is put back (merged with newer uses), so a
    /// database outage delays usage times but does not lose them.
    pub fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let batch: Vec<(i64, NaiveDateTime)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_token_use(&batch) {
            Ok(()) => Ok(batch.len()),
            Err(error) => {
                for (token_id, at) in batch {
                    self.record(token_id, at);
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn only_the_latest_use_per_token_is_kept() {
        let recorder = UsageRecorder::default();
        let at = |s| DateTime::from_timestamp(s, 0).unwrap().naive_utc();
        recorder.record(1, at(20));
        recorder.record(1, at(10));
        recorder.record(2, at(5));
        let pending = recorder.pending.lock().unwrap();
        assert_eq!(pending.get(&1), Some(&at(20)));
        assert_eq!(pending.len(), 2);
    }
}
