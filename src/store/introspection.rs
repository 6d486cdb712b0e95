//! Reads for introspection and the batched `last_used_at` writes it causes.

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::QueryBuilder;
use diesel::sql_types::{BigInt, Timestamp};

use super::changes::UnnoticedWrite;
use super::schema::{resource_servers, sites, token_audiences, tokens};
use super::{with_connection, Store, StoreError};
use crate::domain::introspection::{AudienceMember, TokenFacts};

/// One row of the introspection join, in `TokenFacts`' field order; the audience is read apart.
#[derive(Queryable)]
struct FactsRow {
    token_id: i64,
    slot: Option<i32>,
    active: bool,
    generated_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    scope: Option<String>,
    site_id: i64,
    site_key: String,
    site_name: String,
    site_enabled: bool,
    audience_restricted: bool,
}

impl FactsRow {
    fn into_facts(self, audience: Option<Vec<AudienceMember>>) -> TokenFacts {
        TokenFacts {
            token_id: self.token_id,
            slot: self.slot,
            active: self.active,
            generated_at: self.generated_at,
            expires_at: self.expires_at,
            scope: self.scope,
            site_id: self.site_id,
            site_key: self.site_key,
            site_name: self.site_name,
            site_enabled: self.site_enabled,
            audience,
        }
    }
}

impl Store {
    /// The facts about the token whose value has this digest: one indexed lookup, one join; for a
    /// token with an audience, a second query for its members.
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
                    tokens::site_id,
                    sites::site_key,
                    sites::name,
                    sites::enabled,
                    tokens::audience_restricted,
                ))
                .get_result::<FactsRow>(conn)
                .optional()?;
            let Some(row) = row else {
                return Ok(None);
            };
            if !row.audience_restricted {
                return Ok(Some(row.into_facts(None)));
            }
            // Through the digest again, not the token id: if the value was regenerated since the
            // first read, no member is found, and the retired value is refused by every resource
            // server rather than answered with the new value's audience.
            let mut members: Vec<AudienceMember> = token_audiences::table
                .inner_join(tokens::table)
                .inner_join(resource_servers::table)
                .filter(tokens::value_digest.eq(value_digest))
                .select((resource_servers::id, resource_servers::client_id))
                .load::<(i64, String)>(conn)?
                .into_iter()
                .map(|(resource_server_id, client_id)| AudienceMember {
                    resource_server_id,
                    client_id,
                })
                .collect();
            // Sorted here, not by SQL: PostgreSQL would order by the database's collation.
            members.sort_by(|one, other| one.client_id.cmp(&other.client_id));
            Ok(Some(row.into_facts(Some(members))))
        })
    }

    /// Records when tokens were last used, in one transaction, never moving a time backwards.
    /// Deliberately not a `write_transaction!`: usage does not change any answer, so it records no
    /// change, and no cache anywhere is invalidated by a flush.
    ///
    /// One `UPDATE … FROM` per [`USES_PER_STATEMENT`] uses rather than one per token: on
    /// PostgreSQL each statement is a round trip, made from the server's own cores.
    pub fn record_token_use(&self, uses: &[(i64, NaiveDateTime)]) -> Result<(), StoreError> {
        with_connection!(self, |conn| {
            conn.unnoticed_transaction(|conn| {
                for chunk in uses.chunks(USES_PER_STATEMENT) {
                    let sql = usage_update_sql(&*conn, chunk.len());
                    let mut query = diesel::sql_query(sql).into_boxed();
                    for &(token_id, used_at) in chunk {
                        query = query
                            .bind::<BigInt, _>(token_id)
                            .bind::<Timestamp, _>(used_at);
                    }
                    query.execute(conn)?;
                }
                Ok(())
            })
        })
    }
}

/// Uses written by one statement: 2 bind parameters each, far below the limits of both backends
/// (SQLite 32,766, PostgreSQL 65,535), and a statement SQLite parses in well under a millisecond.
const USES_PER_STATEMENT: usize = 500;

/// The batched usage update for `rows` uses, with the backend's own bind markers (`?` or `$n`).
/// A token listed twice takes its latest time; a time never moves backwards, and a use of a value
/// replaced since (regenerated) is not this value's. SQLite has `UPDATE … FROM` since 3.33.
fn usage_update_sql<C: Connection>(_conn: &C, rows: usize) -> String
where
    <C::Backend as Backend>::QueryBuilder: Default,
{
    let mut sql = <<C::Backend as Backend>::QueryBuilder>::default();
    sql.push_sql("WITH used (token_id, used_at) AS (VALUES ");
    for row in 0..rows {
        sql.push_sql(if row == 0 { "(" } else { ", (" });
        sql.push_bind_param();
        sql.push_sql(", ");
        sql.push_bind_param();
        sql.push_sql(")");
    }
    sql.push_sql(
        "), latest (token_id, used_at) AS \
         (SELECT token_id, MAX(used_at) FROM used GROUP BY token_id) \
         UPDATE tokens SET last_used_at = latest.used_at FROM latest \
         WHERE tokens.id = latest.token_id \
         AND (tokens.last_used_at IS NULL OR tokens.last_used_at < latest.used_at) \
         AND tokens.generated_at <= latest.used_at",
    );
    sql.finish()
}
