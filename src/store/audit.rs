//! Queries on `audit_events`.
//!
//! Events about a change are inserted by the change's own transaction ([`insert_audit!`]), so a
//! change and its record commit or roll back together. Events that change nothing (failed
//! authentications, alarms, pruning) are written through [`UnnoticedWrite`]: they change no cached
//! answer, so they must not empty any cache.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::changes::UnnoticedWrite;
use super::schema::{admins, audit_events, resource_servers, sites};
use super::{with_connection, Store, StoreError};
use crate::domain::audit::{Action, ActorKind, AuditActor, AuditEvent, AuditQuery, Outcome};

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
pub(crate) struct AuditRow<'a> {
    occurred_at: NaiveDateTime,
    actor_kind: &'static str,
    actor_id: Option<&'a str>,
    actor_name: Option<&'a str>,
    action: &'static str,
    target: Option<&'a str>,
    source_address: Option<&'a str>,
    outcome: &'static str,
    detail: Option<&'a str>,
    occurrences: i64,
    last_at: NaiveDateTime,
}

impl<'a> From<&'a AuditEvent> for AuditRow<'a> {
    fn from(event: &'a AuditEvent) -> Self {
        Self {
            occurred_at: event.occurred_at,
            actor_kind: event.actor.kind.as_str(),
            actor_id: event.actor.id.as_deref(),
            actor_name: event.actor.name.as_deref(),
            action: event.action.as_str(),
            target: event.target.as_deref(),
            source_address: event.source_address.as_deref(),
            outcome: event.outcome.as_str(),
            detail: event.detail.as_deref(),
            occurrences: event.occurrences,
            last_at: event.last_at,
        }
    }
}

/// Inserts `$event` (an `&AuditEvent`) on `$conn`, inside the caller's transaction.
macro_rules! insert_audit {
    ($conn:expr, $event:expr) => {
        diesel::insert_into($crate::store::schema::audit_events::table)
            .values($crate::store::audit::AuditRow::from($event))
            .execute($conn)
    };
}

pub(crate) use insert_audit;

#[derive(Queryable)]
struct StoredRow {
    id: i64,
    occurred_at: NaiveDateTime,
    actor_kind: String,
    actor_id: Option<String>,
    actor_name: Option<String>,
    action: String,
    target: Option<String>,
    source_address: Option<String>,
    outcome: String,
    detail: Option<String>,
    occurrences: i64,
    last_at: NaiveDateTime,
}

impl TryFrom<StoredRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: StoredRow) -> Result<Self, StoreError> {
        Ok(AuditEvent {
            id: row.id,
            occurred_at: row.occurred_at,
            actor: AuditActor {
                kind: ActorKind::parse(&row.actor_kind)
                    .ok_or(StoreError::UnexpectedValue("audit_events.actor_kind"))?,
                id: row.actor_id,
                name: row.actor_name,
            },
            action: Action::parse(&row.action)
                .ok_or(StoreError::UnexpectedValue("audit_events.action"))?,
            target: row.target,
            source_address: row.source_address,
            outcome: Outcome::parse(&row.outcome)
                .ok_or(StoreError::UnexpectedValue("audit_events.outcome"))?,
            detail: row.detail,
            occurrences: row.occurrences,
            last_at: row.last_at,
        })
    }
}

impl Store {
    /// Appends events that change no answer (failed authentications, alarms, locks): caches stay.
    pub fn append_audit_events(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        with_connection!(self, |conn| {
            conn.unnoticed_transaction(|conn| {
                for event in events {
                    insert_audit!(conn, event)?;
                }
                Ok(())
            })
        })
    }

    /// Events matching `query`, newest first.
    pub fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        with_connection!(self, |conn| {
            let mut select = audit_events::table.into_boxed();
            if let Some(since) = query.since {
                select = select.filter(audit_events::occurred_at.ge(since));
            }
            if let Some(until) = query.until {
                select = select.filter(audit_events::occurred_at.lt(until));
            }
            if let Some(actor) = &query.actor {
                select = select.filter(audit_events::actor_id.eq(actor));
            }
            if let Some(action) = query.action {
                select = select.filter(audit_events::action.eq(action.as_str()));
            }
            if let Some(before) = query.before_id {
                select = select.filter(audit_events::id.lt(before));
            }
            let rows: Vec<StoredRow> = select
                .order(audit_events::id.desc())
                .limit(query.limit)
                .load(conn)?;
            rows.into_iter().map(AuditEvent::try_from).collect()
        })
    }

    /// Deletes events whose last occurrence is before `before`; returns how many.
    pub fn prune_audit_events(&self, before: NaiveDateTime) -> Result<usize, StoreError> {
        with_connection!(self, |conn| {
            conn.unnoticed_transaction(|conn| {
                Ok(
                    diesel::delete(audit_events::table.filter(audit_events::last_at.lt(before)))
                        .execute(conn)?,
                )
            })
        })
    }

    /// Which of `client_ids` name an existing site, resource server or admin.
    pub fn existing_client_ids(&self, client_ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        if client_ids.is_empty() {
            return Ok(HashSet::new());
        }
        with_connection!(self, |conn| {
            let mut found: HashSet<String> = HashSet::new();
            for chunk in client_ids.chunks(500) {
                found.extend(
                    sites::table
                        .filter(sites::site_key.eq_any(chunk))
                        .select(sites::site_key)
                        .load::<String>(conn)?,
                );
                found.extend(
                    resource_servers::table
                        .filter(resource_servers::client_id.eq_any(chunk))
                        .select(resource_servers::client_id)
                        .load::<String>(conn)?,
                );
                found.extend(
                    admins::table
                        .filter(admins::client_id.eq_any(chunk))
                        .select(admins::client_id)
                        .load::<String>(conn)?,
                );
            }
            Ok(found)
        })
    }
}
