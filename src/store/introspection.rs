//! Reads for introspection and the batched `last_used_at` writes it causes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::changes::UnnoticedWrite;
use super::schema::{sites, tokens};
use super::{with_connection, Store, StoreError};
use crate::domain::introspection::TokenFacts;

/// One row of the introspection join, in `TokenFacts`' field order.
#[derive(Queryable)]
struct FactsRow {
    token_id: i64,
    slot: i32,
    active: bool,
    generated_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    scope: Option<String>,
    site_key: String,
    site_name: String,
    site_enabled: bool,
}

impl From<FactsRow> for TokenFacts {
    fn from(row: FactsRow) -> Self {
        TokenFacts {
            token_id: row.token_id,
            slot: row.slot,
            active: row.active,
            generated_at: row.generated_at,
            expires_at: row.expires_at,
            scope: row.scope,
            site_key: row.site_key,
            site_name: row.site_name,
            site_enabled: row.site_enabled,
        }
    }
}

impl Store {
    /// The facts about the token whose value has this digest: one indexed lookup, one join.
    pub fn token_facts(&self, value_digest: &[u8]) -> Result<Option<TokenFacts>, StoreError> {
        with_connection!(self, |conn| {
            let row = tokens::table
                .inner_join(sites::table)
                .filter(tokens::value_digest.eq(value_digest))
                .select((
                    tokens::id,
                    tokens::slot,
                    tokens::active,
                    tokens::generated_at,
                    tokens::expires_at,
                    tokens::scope,
                    sites::site_key,
                    sites::name,
                    sites::enabled,
                ))
                .get_result::<FactsRow>(conn)
                .optional()?;
            Ok(row.map(TokenFacts::from))
        })
    }

    /// Records when tokens were last used, in one transaction, never moving a time backwards.
    /// Deliberately not a `write_transaction!`: usage does not change any answer, so PostgreSQL
    /// nodes are not notified, and on SQLite the commit does not move this process's generation
    /// when it was provably the only one (`ChangeFeed::write_unnoticed`), so a flush does not
    /// empty the caches. Other processes on the same SQLite file still count it as a change.
    pub fn record_token_use(&self, uses: &[(i64, NaiveDateTime)]) -> Result<(), StoreError> {
        with_connection!(self, |conn| {
            conn.unnoticed_transaction(&self.changes, |conn| {
                for &(token_id, used_at) in uses {
                    diesel::update(
                        tokens::table
                            .filter(tokens::id.eq(token_id))
                            .filter(
                                tokens::last_used_at
                                    .is_null()
                                    .or(tokens::last_used_at.lt(used_at)),
                            )
                            // A use of a value replaced since (regenerated) is not this value's.
                            .filter(tokens::generated_at.le(used_at)),
                    )
                    .set(tokens::last_used_at.eq(used_at))
                    .execute(conn)?;
                }
                Ok(())
            })
        })
    }
}
