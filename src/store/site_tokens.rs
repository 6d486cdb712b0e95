//! Admin-scope queries on a site's tokens: list, create into a free slot, regenerate,
//! validate/invalidate, history, and each token's audience (`token_audiences`). Each change and the
//! history lines recording it are written in one transaction.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::insert_audit;
use super::schema::{resource_servers, sites, token_audiences, token_events, tokens};
use super::tokens::NewEventRow;
use super::{with_connection, write_transaction, ChangeTag, Store, StoreError};
use crate::domain::admin::ManagedToken;
use crate::domain::audit::{Action, Requester};
use crate::domain::history::{Actor, HistoryEntry, TokenEvent};
use crate::domain::introspection::TokenKind;
use crate::domain::slots::{secondary_slots, PRIMARY_SLOT};

#[derive(Queryable, Selectable)]
#[diesel(table_name = tokens)]
struct TokenRow {
    id: i64,
    slot: i32,
    description: String,
    value_hint: String,
    active: bool,
    generated_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    scope: Option<String>,
    audience_restricted: bool,
}

impl TokenRow {
    /// The admin view; `audience` holds the client ids of a restricted token's audience.
    fn into_managed(self, audience: &mut HashMap<i64, Vec<String>>) -> ManagedToken {
        let audience = self
            .audience_restricted
            .then(|| audience.remove(&self.id).unwrap_or_default());
        ManagedToken {
            id: self.id,
            kind: if self.slot == PRIMARY_SLOT {
                TokenKind::Primary
            } else {
                TokenKind::Secondary
            },
            description: self.description,
            value_hint: self.value_hint,
            active: self.active,
            generated_at: self.generated_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
            scope: self.scope,
            audience,
        }
    }
}

#[derive(Queryable)]
struct EventRow {
    occurred_at: NaiveDateTime,
    event: String,
    actor_kind: String,
    actor_name: String,
    detail: Option<String>,
}

impl TryFrom<EventRow> for HistoryEntry {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(HistoryEntry {
            occurred_at: row.occurred_at,
            event: TokenEvent::parse(&row.event)
                .ok_or(StoreError::UnexpectedValue("token_events.event"))?,
            actor: Actor::from_parts(&row.actor_kind, row.actor_name)
                .ok_or(StoreError::UnexpectedValue("token_events.actor_kind"))?,
            detail: row.detail,
        })
    }
}

/// A new non-primary token, in the only forms that may be stored.
#[derive(Debug)]
pub struct NewSecondaryToken<'a> {
    pub value_digest: &'a [u8],
    pub value_hint: &'a str,
    pub description: &'a str,
    pub expires_at: Option<NaiveDateTime>,
    pub scope: Option<&'a str>,
    /// Client ids of the resource servers it is meant for (`domain::audience`); `None`: every
    /// resource server.
    pub audience: Option<&'a [String]>,
}

#[derive(Debug)]
pub enum NewTokenOutcome {
    Created(ManagedToken),
    /// All nine non-primary slots are taken.
    LimitReached,
    /// This client id of the audience names no resource server; nothing was stored.
    UnknownResourceServer(String),
}

/// Who made a change, as the token's history (by name) and the audit trail (by id and address)
/// each record them.
#[derive(Debug)]
pub struct Author<'a> {
    pub history: Actor,
    pub audit: &'a Requester,
}

/// What an admin does to an existing non-primary token.
#[derive(Debug)]
pub enum TokenChange<'a> {
    /// Replaces the value; the token keeps its active flag, and its audience unless `audience`
    /// gives a new one.
    Regenerate {
        value_digest: &'a [u8],
        value_hint: &'a str,
        audience: Option<&'a [String]>,
    },
    /// Validates (`true`) or invalidates (`false`).
    SetActive(bool),
}

#[derive(Debug)]
pub enum TokenChangeOutcome {
    Changed(ManagedToken),
    /// Nothing to do (validating an active token, invalidating an inactive one, the same
    /// description); nothing was recorded.
    Unchanged(ManagedToken),
    /// The site has no token with this id.
    NotFound,
    /// The id is the site's primary token, which the admin scope may not change.
    Primary,
    /// This client id of the new audience names no resource server; nothing was changed.
    UnknownResourceServer(String),
}

/// How the audit trail names a token: `SITE_KEY/tokens/ID`, as in the admin API's paths. A macro,
/// so its query compiles for whichever backend the surrounding transaction runs on.
macro_rules! token_target {
    ($conn:expr, $site_id:expr, $token_id:expr) => {
        sites::table
            .filter(sites::id.eq($site_id))
            .select(sites::site_key)
            .get_result::<String>($conn)
            .map(|site_key| format!("{site_key}/tokens/{}", $token_id))
    };
}

impl Store {
    /// Every token of the site, in no particular order.
    pub fn site_tokens(&self, site_id: i64) -> Result<Vec<ManagedToken>, StoreError> {
        with_connection!(self, |conn| {
            let rows = tokens::table
                .filter(tokens::site_id.eq(site_id))
                .select(TokenRow::as_select())
                .load(conn)?;
            conn.managed(rows)
        })
    }

    pub fn site_token(
        &self,
        site_id: i64,
        token_id: i64,
    ) -> Result<Option<ManagedToken>, StoreError> {
        with_connection!(self, |conn| {
            let row = tokens::table
                .filter(tokens::id.eq(token_id))
                .filter(tokens::site_id.eq(site_id))
                .select(TokenRow::as_select())
                .get_result(conn)
                .optional()?;
            row.map(|row| conn.managed_one(row)).transpose()
        })
    }

    /// Stores a non-primary token, and its audience, in the site's first free slot.
    ///
    /// The 10-token limit holds under any concurrency without counting first: each attempt is an
    /// `INSERT … ON CONFLICT (site_id, slot) DO NOTHING`, so a slot another transaction holds (or
    /// is inserting into) is skipped, and there is no slot past the ninth. The audience's
    /// resource servers are looked up and locked in the same transaction: one deleted before is
    /// refused here, one deleted after leaves the audience through `ON DELETE CASCADE`.
    pub fn create_secondary_token(
        &self,
        site_id: i64,
        new: &NewSecondaryToken,
        author: &Author,
        now: NaiveDateTime,
    ) -> Result<NewTokenOutcome, StoreError> {
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let audience = match new
                .audience
                .map(|client_ids| conn.resource_server_ids(client_ids))
                .transpose()?
            {
                Some(Err(unknown)) => return Ok(NewTokenOutcome::UnknownResourceServer(unknown)),
                Some(Ok(ids)) => Some(ids),
                None => None,
            };
            for slot in secondary_slots() {
                let inserted = diesel::insert_into(tokens::table)
                    .values((
                        tokens::site_id.eq(site_id),
                        tokens::slot.eq(slot),
                        tokens::description.eq(new.description),
                        tokens::value_digest.eq(new.value_digest),
                        tokens::value_hint.eq(new.value_hint),
                        tokens::active.eq(true),
                        tokens::generated_at.eq(now),
                        tokens::expires_at.eq(new.expires_at),
                        tokens::scope.eq(new.scope),
                        tokens::audience_restricted.eq(audience.is_some()),
                    ))
                    .on_conflict((tokens::site_id, tokens::slot))
                    .do_nothing()
                    .returning(TokenRow::as_returning())
                    .get_result(conn)
                    .optional()?;
                if let Some(row) = inserted {
                    // Only an answer that the value was unknown can change.
                    changed.tag(ChangeTag::token(new.value_digest));
                    if let Some(audience) = &audience {
                        conn.add_audience(row.id, audience)?;
                    }
                    let event = NewEventRow {
                        value_digest: Some(new.value_digest),
                        ..NewEventRow::new(row.id, TokenEvent::Created, &author.history, now)
                    };
                    diesel::insert_into(token_events::table)
                        .values(&event)
                        .execute(conn)?;
                    let audit = author
                        .audit
                        .event(
                            now,
                            Action::TokenCreated,
                            token_target!(conn, site_id, row.id)?,
                        )
                        .with_detail(match new.audience {
                            Some(audience) => format!(
                                "description {}, audience {}",
                                new.description,
                                audience.join(" ")
                            ),
                            None => format!("description {}", new.description),
                        });
                    insert_audit!(conn, &audit)?;
                    return Ok(NewTokenOutcome::Created(conn.managed_one(row)?));
                }
            }
            Ok(NewTokenOutcome::LimitReached)
        })
    }

    /// Applies `change` (and a new description, if given and different) to a non-primary token of
    /// the site, and records each effective change in its history.
    ///
    /// The row is locked first by a no-op `UPDATE … RETURNING`, so concurrent changes to one token
    /// apply one after the other and each sees the state the previous one left (a `SELECT … FOR
    /// UPDATE` in one statement that both backends accept). Validating an active token or
    /// invalidating an inactive one changes nothing and records nothing.
    pub fn change_token(
        &self,
        site_id: i64,
        token_id: i64,
        change: &TokenChange,
        description: Option<&str>,
        author: &Author,
        now: NaiveDateTime,
    ) -> Result<TokenChangeOutcome, StoreError> {
        let this_token = tokens::id.eq(token_id).and(tokens::site_id.eq(site_id));
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let locked = diesel::update(tokens::table.filter(this_token))
                .set(tokens::slot.eq(tokens::slot))
                .returning(TokenRow::as_returning())
                .get_result(conn)
                .optional()?;
            let Some(current) = locked else {
                return Ok(TokenChangeOutcome::NotFound);
            };
            if current.slot == PRIMARY_SLOT {
                return Ok(TokenChangeOutcome::Primary);
            }
            let current_digest = tokens::table
                .filter(this_token)
                .select(tokens::value_digest)
                .get_result::<Vec<u8>>(conn)?;
            let new_audience = match change {
                TokenChange::Regenerate {
                    audience: Some(client_ids),
                    ..
                } => match conn.resource_server_ids(client_ids)? {
                    Ok(ids) => Some(ids),
                    Err(unknown) => return Ok(TokenChangeOutcome::UnknownResourceServer(unknown)),
                },
                _ => None,
            };
            let target = token_target!(conn, site_id, token_id)?;
            // Client ids of an audience a regeneration replaces, for the audit trail.
            let replaced_audience = match change {
                TokenChange::Regenerate { audience, .. } => *audience,
                _ => None,
            };
            let record = |conn: &mut _, event: TokenEvent, digest, detail: Option<&str>| {
                let row = NewEventRow {
                    value_digest: digest,
                    detail,
                    ..NewEventRow::new(token_id, event, &author.history, now)
                };
                diesel::insert_into(token_events::table)
                    .values(&row)
                    .execute(conn)?;
                let action = match event {
                    TokenEvent::Created => Action::TokenCreated,
                    TokenEvent::Validated => Action::TokenValidated,
                    TokenEvent::Invalidated => Action::TokenInvalidated,
                    TokenEvent::Regenerated => Action::TokenRegenerated,
                    TokenEvent::DescriptionChanged => Action::TokenDescriptionChanged,
                };
                let mut audit = author.audit.event(now, action, target.clone());
                if let Some(detail) = detail {
                    audit = audit.with_detail(format!("description {detail}"));
                } else if let (TokenEvent::Regenerated, Some(audience)) = (event, replaced_audience)
                {
                    audit = audit.with_detail(format!("audience {}", audience.join(" ")));
                }
                insert_audit!(conn, &audit).map(drop)
            };
            let mut any_change = false;
            match *change {
                TokenChange::Regenerate {
                    value_digest,
                    value_hint,
                    ..
                } => {
                    changed.tag(ChangeTag::token(&current_digest));
                    changed.tag(ChangeTag::token(value_digest));
                    diesel::update(tokens::table.filter(this_token))
                        .set((
                            tokens::value_digest.eq(value_digest),
                            tokens::value_hint.eq(value_hint),
                            tokens::generated_at.eq(now),
                            tokens::last_used_at.eq(None::<NaiveDateTime>),
                        ))
                        .execute(conn)?;
                    if let Some(audience) = &new_audience {
                        diesel::update(tokens::table.filter(this_token))
                            .set(tokens::audience_restricted.eq(true))
                            .execute(conn)?;
                        diesel::delete(
                            token_audiences::table.filter(token_audiences::token_id.eq(token_id)),
                        )
                        .execute(conn)?;
                        conn.add_audience(token_id, audience)?;
                    }
                    record(conn, TokenEvent::Regenerated, Some(value_digest), None)?;
                    any_change = true;
                }
                TokenChange::SetActive(active) if active != current.active => {
                    changed.tag(ChangeTag::token(&current_digest));
                    diesel::update(tokens::table.filter(this_token))
                        .set(tokens::active.eq(active))
                        .execute(conn)?;
                    let event = if active {
                        TokenEvent::Validated
                    } else {
                        TokenEvent::Invalidated
                    };
                    record(conn, event, None, None)?;
                    any_change = true;
                }
                TokenChange::SetActive(_) => {}
            }
            // No cached answer includes the description.
            if let Some(description) = description.filter(|new| *new != current.description) {
                diesel::update(tokens::table.filter(this_token))
                    .set(tokens::description.eq(description))
                    .execute(conn)?;
                record(
                    conn,
                    TokenEvent::DescriptionChanged,
                    None,
                    Some(description),
                )?;
                any_change = true;
            }
            let after = tokens::table
                .filter(this_token)
                .select(TokenRow::as_select())
                .get_result(conn)?;
            let token = conn.managed_one(after)?;
            Ok(if any_change {
                TokenChangeOutcome::Changed(token)
            } else {
                TokenChangeOutcome::Unchanged(token)
            })
        })
    }

    /// The token's history, oldest first; `None` when the site has no token with this id.
    pub fn token_history(
        &self,
        site_id: i64,
        token_id: i64,
    ) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        with_connection!(self, |conn| {
            let exists = tokens::table
                .filter(tokens::id.eq(token_id))
                .filter(tokens::site_id.eq(site_id))
                .select(tokens::id)
                .get_result::<i64>(conn)
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let rows = token_events::table
                .filter(token_events::token_id.eq(token_id))
                .order(token_events::id)
                .select((
                    token_events::occurred_at,
                    token_events::event,
                    token_events::actor_kind,
                    token_events::actor_name,
                    token_events::detail,
                ))
                .load::<EventRow>(conn)?;
            rows.into_iter()
                .map(HistoryEntry::try_from)
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        })
    }
}

/// Audience lookups and writes inside the queries above, written once and compiled per backend.
trait AudienceQueries {
    /// The ids of these resource servers, in order, or the first client id that names none. Each
    /// row is locked by a no-op `UPDATE … RETURNING` (as `change_token` locks a token), so that a
    /// concurrent delete waits for this transaction and then removes the audience rows it wrote,
    /// rather than committing in between and failing their foreign key.
    fn resource_server_ids(
        &mut self,
        client_ids: &[String],
    ) -> Result<Result<Vec<i64>, String>, StoreError>;
    /// Adds these resource servers to the token's audience.
    fn add_audience(
        &mut self,
        token_id: i64,
        resource_server_ids: &[i64],
    ) -> Result<(), StoreError>;
    /// The admin views of these rows, with one query for the audiences of those restricted.
    fn managed(&mut self, rows: Vec<TokenRow>) -> Result<Vec<ManagedToken>, StoreError>;
    fn managed_one(&mut self, row: TokenRow) -> Result<ManagedToken, StoreError>;
}

macro_rules! impl_audience_queries {
    ($connection:ty) => {
        impl AudienceQueries for $connection {
            fn resource_server_ids(
                &mut self,
                client_ids: &[String],
            ) -> Result<Result<Vec<i64>, String>, StoreError> {
                let mut ids = Vec::with_capacity(client_ids.len());
                for client_id in client_ids {
                    let this_server = resource_servers::client_id.eq(client_id);
                    let id = diesel::update(resource_servers::table.filter(this_server))
                        .set(resource_servers::name.eq(resource_servers::name))
                        .returning(resource_servers::id)
                        .get_result::<i64>(self)
                        .optional()?;
                    match id {
                        Some(id) => ids.push(id),
                        None => return Ok(Err(client_id.clone())),
                    }
                }
                Ok(Ok(ids))
            }

            fn add_audience(
                &mut self,
                token_id: i64,
                resource_server_ids: &[i64],
            ) -> Result<(), StoreError> {
                for &resource_server_id in resource_server_ids {
                    diesel::insert_into(token_audiences::table)
                        .values((
                            token_audiences::token_id.eq(token_id),
                            token_audiences::resource_server_id.eq(resource_server_id),
                        ))
                        .on_conflict_do_nothing()
                        .execute(self)?;
                }
                Ok(())
            }

            fn managed(&mut self, rows: Vec<TokenRow>) -> Result<Vec<ManagedToken>, StoreError> {
                let restricted: Vec<i64> = rows
                    .iter()
                    .filter(|row| row.audience_restricted)
                    .map(|row| row.id)
                    .collect();
                let mut audiences: HashMap<i64, Vec<String>> = HashMap::new();
                if !restricted.is_empty() {
                    let members = token_audiences::table
                        .inner_join(resource_servers::table)
                        .filter(token_audiences::token_id.eq_any(&restricted))
                        .select((token_audiences::token_id, resource_servers::client_id))
                        .load::<(i64, String)>(self)?;
                    for (token_id, client_id) in members {
                        audiences.entry(token_id).or_default().push(client_id);
                    }
                    // Sorted here, not by SQL: PostgreSQL would order by the database's collation,
                    // and introspection's `aud` lists them in this same order.
                    for client_ids in audiences.values_mut() {
                        client_ids.sort_unstable();
                    }
                }
                Ok(rows
                    .into_iter()
                    .map(|row| row.into_managed(&mut audiences))
                    .collect())
            }

            fn managed_one(&mut self, row: TokenRow) -> Result<ManagedToken, StoreError> {
                self.managed(vec![row])?
                    .pop()
                    .ok_or(StoreError::UnexpectedValue("tokens"))
            }
        }
    };
}

impl_audience_queries!(diesel::sqlite::SqliteConnection);
impl_audience_queries!(diesel::pg::PgConnection);
