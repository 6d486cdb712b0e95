//! Queries on `throttle_failures`: the failed client authentications every node counted, added
//! together (`domain::throttle` says what the keys and counts mean). Written through
//! [`UnnoticedWrite`]: no cached answer depends on them.

use chrono::NaiveDateTime;
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::changes::UnnoticedWrite;
use super::schema::throttle_failures;
use super::{with_connection, Store, StoreError};

/// One key's failures, as a node adds them or as the deployment has them.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct FailureCount {
    pub key: Vec<u8>,
    pub window_start: NaiveDateTime,
    pub failures: i32,
}

impl Store {
    /// Adds `added` (a node's failures since its last call, each with the start of its window) to
    /// the deployment's counts, a count whose window ended before `now - window` starting afresh;
    /// then deletes the counts whose window ended and returns every count changed since `since`
    /// by any node. One transaction that changes nothing cached; with nothing to add, a plain
    /// read (a window that ended and was read back is ignored by the throttle).
    pub fn exchange_throttle_failures(
        &self,
        added: &[FailureCount],
        window: chrono::TimeDelta,
        since: NaiveDateTime,
        now: NaiveDateTime,
    ) -> Result<Vec<FailureCount>, StoreError> {
        let ended = now - window;
        let changed_since = throttle_failures::table
            .filter(throttle_failures::updated_at.ge(since))
            .select((
                throttle_failures::key,
                throttle_failures::window_start,
                throttle_failures::failures,
            ));
        if added.is_empty() {
            // Nothing to add: a plain read, which never waits for a writer (SQLite's WAL).
            return with_connection!(self, |conn| Ok(changed_since.load::<FailureCount>(conn)?));
        }
        with_connection!(self, |conn| {
            conn.unnoticed_transaction(|conn| {
                for count in added {
                    let expired = throttle_failures::window_start.le(ended);
                    diesel::insert_into(throttle_failures::table)
                        .values((
                            throttle_failures::key.eq(&count.key),
                            throttle_failures::window_start.eq(count.window_start),
                            throttle_failures::failures.eq(count.failures),
                            throttle_failures::updated_at.eq(now),
                        ))
                        .on_conflict(throttle_failures::key)
                        .do_update()
                        .set((
                            throttle_failures::failures.eq(case_when(
                                expired,
                                excluded(throttle_failures::failures),
                            )
                            .otherwise(
                                throttle_failures::failures + excluded(throttle_failures::failures),
                            )),
                            throttle_failures::window_start.eq(case_when(
                                expired,
                                excluded(throttle_failures::window_start),
                            )
                            .otherwise(throttle_failures::window_start)),
                            throttle_failures::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                }
                diesel::delete(
                    throttle_failures::table.filter(throttle_failures::window_start.le(ended)),
                )
                .execute(conn)?;
                Ok(changed_since.load::<FailureCount>(conn)?)
            })
        })
    }
}
