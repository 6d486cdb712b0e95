//! Backups of an SQLite database, and what a restore must undo: a copy taken while the server
//! runs (`VACUUM INTO` reads one snapshot; WAL readers never block the server's writers), and the
//! ending of every token and admin session a restored copy would bring back to life.
//!
//! PostgreSQL deployments back up with the cluster's own tools (`pg_dump`, base backups); after
//! restoring one of those, [`Store::end_restored_sessions`] is run on it the same way.

use std::path::Path;

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamp};

use super::audit::insert_audit;
use super::schema::{admin_tokens, audit_events, token_events, tokens};
use super::{with_connection, write_transaction, Pools, Store, StoreError};
use crate::domain::audit::{Action, Requester};
use crate::domain::history::{Actor, TokenEvent};

/// What [`Store::end_restored_sessions`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedSessions {
    /// Tokens (primary and not) that were active in the restored data.
    pub tokens: usize,
    /// Admin tokens: every admin signs in again.
    pub admin_tokens: usize,
}

impl Store {
    /// Writes a consistent copy of this SQLite database to `to`, which must not exist, recording
    /// `backup_created` first so that the copy holds the moment it was taken. Refused on
    /// PostgreSQL.
    pub fn backup_sqlite(
        &self,
        to: &Path,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let Pools::Sqlite(pool) = &self.pools else {
            return Err(StoreError::NotSqlite);
        };
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let event = by
                .event(now, Action::BackupCreated, to.display().to_string())
                .with_detail("sqlite copy");
            insert_audit!(conn, &event)?;
            Ok(())
        })?;
        let conn: &mut diesel::sqlite::SqliteConnection = &mut *pool.get()?;
        diesel::sql_query("VACUUM INTO ?")
            .bind::<Text, _>(to.to_string_lossy())
            .execute(conn)?;
        Ok(())
    }

    /// When the newest backup recorded in this database was taken (for a restored copy: the
    /// moment the copy holds), if any.
    pub fn last_backup_taken_at(&self) -> Result<Option<NaiveDateTime>, StoreError> {
        with_connection!(self, |conn| {
            Ok(audit_events::table
                .filter(audit_events::action.eq(Action::BackupCreated.as_str()))
                .select(diesel::dsl::max(audit_events::occurred_at))
                .first::<Option<NaiveDateTime>>(conn)?)
        })
    }

    /// After a restore: every token that is active in the restored data is made inactive, with
    /// an `invalidated` entry by `actor` in its history (some were invalidated after the backup
    /// was taken, and nothing tells which), and every admin token is deleted. Recorded as
    /// `backup_restored` with `detail`. A site's next token request then mints a new primary
    /// token.
    pub fn end_restored_sessions(
        &self,
        actor: &Actor,
        by: &Requester,
        detail: &str,
        now: NaiveDateTime,
    ) -> Result<EndedSessions, StoreError> {
        write_transaction!(self, |conn, _changed| {
            // Every cached answer may be stale: the change counts as everything (the default).
            let history = tokens::table.filter(tokens::active.eq(true)).select((
                tokens::id,
                now.into_sql::<Timestamp>(),
                TokenEvent::Invalidated.as_str().into_sql::<Text>(),
                actor.kind().into_sql::<Text>(),
                actor.name().into_sql::<Text>(),
                Some(detail).into_sql::<Nullable<Text>>(),
                tokens::description.nullable(),
            ));
            diesel::insert_into(token_events::table)
                .values(history)
                .into_columns((
                    token_events::token_id,
                    token_events::occurred_at,
                    token_events::event,
                    token_events::actor_kind,
                    token_events::actor_name,
                    token_events::detail,
                    token_events::description,
                ))
                .execute(conn)?;
            let tokens = diesel::update(tokens::table.filter(tokens::active.eq(true)))
                .set(tokens::active.eq(false))
                .execute(conn)?;
            let admin_tokens = diesel::delete(admin_tokens::table).execute(conn)?;
            let event = by
                .event(now, Action::BackupRestored, "database")
                .with_detail(format!(
                    "{detail}; {tokens} tokens and {admin_tokens} admin tokens ended"
                ));
            insert_audit!(conn, &event)?;
            Ok(EndedSessions {
                tokens,
                admin_tokens,
            })
        })
    }
}

/// Leaves the SQLite file at `path` whole on its own, without `-wal` or `-shm` beside it, so it can
/// be renamed into place: its log is checkpointed into it and the journal mode set back to the
/// default (the server sets WAL again when it opens it). Leaving WAL needs every other connection
/// closed; a pool just dropped may still be closing the ones its threads opened, so the change is
/// retried for up to `wait`.
pub fn settle_sqlite_file(path: &Path, wait: std::time::Duration) -> Result<(), StoreError> {
    let mut conn = diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy())
        .map_err(|error| StoreError::SqliteFileUnwritable(error.to_string()))?;
    conn.batch_execute(&format!("PRAGMA busy_timeout = {}", wait.as_millis()))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let settled = conn
            .batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
            .and_then(|()| {
                diesel::sql_query("PRAGMA journal_mode = DELETE")
                    .get_result::<JournalMode>(&mut conn)
            });
        match settled {
            Ok(mode) if mode.journal_mode == "delete" => return Ok(()),
            Err(diesel::result::Error::DatabaseError(_, info))
                if !info.message().contains("locked") =>
            {
                return Err(StoreError::SqliteFileUnwritable(info.message().to_string()));
            }
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => {
                return Err(StoreError::SqliteFileUnwritable(format!(
                    "{}: still open elsewhere",
                    path.display()
                )))
            }
        }
    }
}

#[derive(QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}
