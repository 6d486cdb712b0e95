//! Admin-scope queries on a site's tokens: list, create into a free slot, regenerate,
//! validate/invalidate, history, and each token's audience (`token_audiences`). Each change and the
//! history lines recording it are written in one transaction.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::insert_audit;
use super::changes::Changed;
use super::schema::{resource_servers, sites, token_audiences, token_events, tokens};
use super::tokens::NewEventRow;
use super::{with_connection, write_transaction, ChangeTag, Store, StoreError};
use crate::domain::admin::{revival_needs_new_expiry, ManagedToken};
use crate::domain::audit::{Action, Requester};
use crate::domain::history::{Actor, HistoryEntry, SiteHistoryEntry, TokenEvent};
use crate::domain::introspection::TokenKind;
use crate::domain::slots::{secondary_slots, PRIMARY_SLOT};

#[derive(Queryable, Selectable)]
#[diesel(table_name = tokens)]
struct TokenRow {
    id: i64,
    slot: Option<i32>,
    description: String,
    value_hint: String,
    active: bool,
    generated_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    scope: Option<String>,
    audience_restricted: bool,
    retired_at: Option<NaiveDateTime>,
}

impl TokenRow {
    /// The admin view; `audience` holds the client ids of a restricted token's audience.
    fn into_managed(self, audience: &mut HashMap<i64, Vec<String>>) -> ManagedToken {
        let audience = self
            .audience_restricted
            .then(|| audience.remove(&self.id).unwrap_or_default());
        ManagedToken {
            id: self.id,
            kind: if self.slot == Some(PRIMARY_SLOT) {
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
            retired_at: self.retired_at,
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
    /// Replaces the value, and the expiry when `expires_at` is given; the token keeps its active
    /// flag, and its audience unless `audience` gives a new one.
    Regenerate {
        value_digest: &'a [u8],
        value_hint: &'a str,
        audience: Option<&'a [String]>,
        expires_at: Option<NaiveDateTime>,
    },
    /// Marks it active, with a new expiry when `expires_at` is given.
    Validate {
        expires_at: Option<NaiveDateTime>,
    },
    Invalidate,
    /// Refuses it for good and frees its slot; its row and history stay.
    Retire,
}

impl TokenChange<'_> {
    /// Whether this change would leave an expired token refused (`revival_needs_new_expiry`).
    fn needs_new_expiry(&self, expires_at: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
        match self {
            TokenChange::Regenerate {
                expires_at: new, ..
            }
            | TokenChange::Validate { expires_at: new } => {
                revival_needs_new_expiry(expires_at, *new, now)
            }
            TokenChange::Invalidate | TokenChange::Retire => false,
        }
    }
}

#[derive(Debug)]
pub enum TokenChangeOutcome {
    Changed(ManagedToken),
    /// Nothing to do (validating an active token, invalidating an inactive one, the same
    /// description); nothing was recorded.
    Unchanged(ManagedToken),
    /// The site has no token with this id (or no longer: it was retired).
    NotFound,
    /// The id is the site's primary token, which the admin scope may not change.
    Primary,
    /// This client id of the new audience names no resource server; nothing was changed.
    UnknownResourceServer(String),
    /// The token has expired and the change gives it no new expiry; nothing was changed.
    Expired,
}

/// Why a bulk change changed nothing, for the first token id (in ascending order) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkRefusal {
    /// No token of any site has this id, or the site's was retired.
    NotFound,
    Primary,
    /// The id is another site's token.
    OtherSite,
    /// Validating an expired token, which needs a new expiry first.
    Expired,
}

#[derive(Debug)]
pub enum BulkChangeOutcome {
    /// Every token, in ascending id order, as the change left it.
    Changed(Vec<ManagedToken>),
    /// Nothing changed because of this token id.
    Refused(i64, BulkRefusal),
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
    /// Every live (not retired) token of the site, in no particular order.
    pub fn site_tokens(&self, site_id: i64) -> Result<Vec<ManagedToken>, StoreError> {
        with_connection!(self, |conn| {
            let rows = tokens::table
                .filter(tokens::site_id.eq(site_id))
                .filter(tokens::slot.is_not_null())
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
                .filter(tokens::slot.is_not_null())
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
                        ..NewEventRow::new(
                            row.id,
                            TokenEvent::Created,
                            &author.history,
                            new.description,
                            now,
                        )
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

    /// Applies `change` (and a new description, if given and different) to a live non-primary
    /// token of the site, and records each effective change in its history.
    ///
    /// The row is locked first (`TokenChanges::lock_live_token`), so concurrent changes to one
    /// token apply one after the other and each sees the state the previous one left. Validating
    /// an active token or invalidating an inactive one changes nothing and records nothing.
    pub fn change_token(
        &self,
        site_id: i64,
        token_id: i64,
        change: &TokenChange,
        description: Option<&str>,
        author: &Author,
        now: NaiveDateTime,
    ) -> Result<TokenChangeOutcome, StoreError> {
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let Some(current) = conn.lock_live_token(site_id, token_id)? else {
                return Ok(TokenChangeOutcome::NotFound);
            };
            if current.slot == Some(PRIMARY_SLOT) {
                return Ok(TokenChangeOutcome::Primary);
            }
            let edit = Edit {
                change,
                description,
                author,
                bulk: None,
                now,
            };
            conn.apply_change(changed, site_id, &current, &edit)
        })
    }

    /// Applies `change` (validate, invalidate or retire) to each of these tokens of the site, all
    /// or nothing, in one transaction: every row is locked and checked (in ascending id order, so
    /// concurrent bulk changes cannot deadlock) before the first is changed. Each token's change
    /// is recorded in its history and in the audit trail, naming the bulk action.
    pub fn change_tokens(
        &self,
        site_id: i64,
        token_ids: &[i64],
        change: &TokenChange,
        author: &Author,
        now: NaiveDateTime,
    ) -> Result<BulkChangeOutcome, StoreError> {
        let mut ids = token_ids.to_vec();
        ids.sort_unstable();
        let bulk = format!(
            "bulk action on tokens {}",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
        );
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let mut locked = Vec::with_capacity(ids.len());
            for &token_id in &ids {
                let Some(current) = conn.lock_live_token(site_id, token_id)? else {
                    let elsewhere = tokens::table
                        .filter(tokens::id.eq(token_id))
                        .filter(tokens::site_id.ne(site_id))
                        .select(tokens::id)
                        .get_result::<i64>(conn)
                        .optional()?
                        .is_some();
                    let refusal = if elsewhere {
                        BulkRefusal::OtherSite
                    } else {
                        BulkRefusal::NotFound
                    };
                    return Ok(BulkChangeOutcome::Refused(token_id, refusal));
                };
                if current.slot == Some(PRIMARY_SLOT) {
                    return Ok(BulkChangeOutcome::Refused(token_id, BulkRefusal::Primary));
                }
                if change.needs_new_expiry(current.expires_at, now) {
                    return Ok(BulkChangeOutcome::Refused(token_id, BulkRefusal::Expired));
                }
                locked.push(current);
            }
            let edit = Edit {
                change,
                description: None,
                author,
                bulk: Some(&bulk),
                now,
            };
            let mut after = Vec::with_capacity(locked.len());
            for current in &locked {
                match conn.apply_change(changed, site_id, current, &edit)? {
                    TokenChangeOutcome::Changed(token) | TokenChangeOutcome::Unchanged(token) => {
                        after.push(token)
                    }
                    // Each token was checked above, under its row lock.
                    _ => return Err(StoreError::UnexpectedValue("tokens (bulk change)")),
                }
            }
            Ok(BulkChangeOutcome::Changed(after))
        })
    }

    /// One page of the site's history, newest first: every event of every token the site has
    /// had, retired ones included, with ids below `before` (the cursor), at most `limit`.
    pub fn site_history(
        &self,
        site_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SiteHistoryEntry>, StoreError> {
        with_connection!(self, |conn| {
            let mut query = token_events::table
                .inner_join(tokens::table)
                .filter(tokens::site_id.eq(site_id))
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(token_events::id.lt(before));
            }
            let rows = query
                .order(token_events::id.desc())
                .limit(limit)
                .select((
                    token_events::id,
                    token_events::token_id,
                    token_events::description,
                    (
                        token_events::occurred_at,
                        token_events::event,
                        token_events::actor_kind,
                        token_events::actor_name,
                        token_events::detail,
                    ),
                ))
                .load::<(i64, i64, Option<String>, EventRow)>(conn)?;
            rows.into_iter()
                .map(|(id, token_id, description, event)| {
                    Ok(SiteHistoryEntry {
                        id,
                        token_id,
                        description,
                        entry: HistoryEntry::try_from(event)?,
                    })
                })
                .collect()
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

/// One change to apply to a locked token, and who makes it.
struct Edit<'a> {
    change: &'a TokenChange<'a>,
    /// A new description, if given.
    description: Option<&'a str>,
    author: &'a Author<'a>,
    /// For a token changed by a bulk action: the audit detail naming it.
    bulk: Option<&'a str>,
    now: NaiveDateTime,
}

/// Changes to one token inside the transactions above, written once and compiled per backend.
trait TokenChanges {
    /// The site's live (not retired) token with this id, locked by a no-op `UPDATE … RETURNING`
    /// (a `SELECT … FOR UPDATE` in one statement that both backends accept).
    fn lock_live_token(
        &mut self,
        site_id: i64,
        token_id: i64,
    ) -> Result<Option<TokenRow>, StoreError>;
    /// Applies `edit` to `current` (locked, non-primary) and records each effective change in
    /// its history and the audit trail; names in `changed` what cached answers it changes.
    fn apply_change(
        &mut self,
        changed: &mut Changed,
        site_id: i64,
        current: &TokenRow,
        edit: &Edit,
    ) -> Result<TokenChangeOutcome, StoreError>;
}

/// The audit action recording a history event.
fn audit_action(event: TokenEvent) -> Action {
    match event {
        TokenEvent::Created => Action::TokenCreated,
        TokenEvent::Validated => Action::TokenValidated,
        TokenEvent::Invalidated => Action::TokenInvalidated,
        TokenEvent::Regenerated => Action::TokenRegenerated,
        TokenEvent::DescriptionChanged => Action::TokenDescriptionChanged,
        TokenEvent::Retired => Action::TokenRetired,
    }
}

macro_rules! impl_token_changes {
    ($connection:ty) => {
        impl TokenChanges for $connection {
            fn lock_live_token(
                &mut self,
                site_id: i64,
                token_id: i64,
            ) -> Result<Option<TokenRow>, StoreError> {
                let live = tokens::id
                    .eq(token_id)
                    .and(tokens::site_id.eq(site_id))
                    .and(tokens::slot.is_not_null());
                Ok(diesel::update(tokens::table.filter(live))
                    .set(tokens::slot.eq(tokens::slot))
                    .returning(TokenRow::as_returning())
                    .get_result(self)
                    .optional()?)
            }

            fn apply_change(
                &mut self,
                changed: &mut Changed,
                site_id: i64,
                current: &TokenRow,
                edit: &Edit,
            ) -> Result<TokenChangeOutcome, StoreError> {
                let (token_id, now, author) = (current.id, edit.now, edit.author);
                if edit.change.needs_new_expiry(current.expires_at, now) {
                    return Ok(TokenChangeOutcome::Expired);
                }
                let this_token = tokens::id.eq(token_id);
                let current_digest = tokens::table
                    .filter(this_token)
                    .select(tokens::value_digest)
                    .get_result::<Vec<u8>>(self)?;
                let new_audience = match edit.change {
                    TokenChange::Regenerate {
                        audience: Some(client_ids),
                        ..
                    } => match self.resource_server_ids(client_ids)? {
                        Ok(ids) => Some(ids),
                        Err(unknown) => {
                            return Ok(TokenChangeOutcome::UnknownResourceServer(unknown))
                        }
                    },
                    _ => None,
                };
                let target = token_target!(self, site_id, token_id)?;
                let record = |conn: &mut Self,
                              event: TokenEvent,
                              digest: Option<&[u8]>,
                              detail: Option<&str>,
                              description: &str,
                              mut audit_details: Vec<String>| {
                    let row = NewEventRow {
                        value_digest: digest,
                        detail,
                        ..NewEventRow::new(token_id, event, &author.history, description, now)
                    };
                    diesel::insert_into(token_events::table)
                        .values(&row)
                        .execute(conn)?;
                    audit_details.extend(edit.bulk.map(str::to_string));
                    let mut audit = author.audit.event(now, audit_action(event), target.clone());
                    if !audit_details.is_empty() {
                        audit = audit.with_detail(audit_details.join(", "));
                    }
                    insert_audit!(conn, &audit).map(drop)
                };
                let new_expiry = match edit.change {
                    TokenChange::Regenerate { expires_at, .. }
                    | TokenChange::Validate { expires_at } => *expires_at,
                    TokenChange::Invalidate | TokenChange::Retire => None,
                };
                let expiry_detail = new_expiry.map(|expires_at| {
                    format!(
                        "expires_at {}",
                        expires_at
                            .and_utc()
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                });
                if let Some(expires_at) = new_expiry {
                    diesel::update(tokens::table.filter(this_token))
                        .set(tokens::expires_at.eq(expires_at))
                        .execute(self)?;
                }
                let mut any_change = false;
                match edit.change {
                    TokenChange::Regenerate {
                        value_digest,
                        value_hint,
                        audience,
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
                            .execute(self)?;
                        if let Some(ids) = &new_audience {
                            diesel::update(tokens::table.filter(this_token))
                                .set(tokens::audience_restricted.eq(true))
                                .execute(self)?;
                            diesel::delete(
                                token_audiences::table
                                    .filter(token_audiences::token_id.eq(token_id)),
                            )
                            .execute(self)?;
                            self.add_audience(token_id, ids)?;
                        }
                        let details = audience
                            .map(|audience| format!("audience {}", audience.join(" ")))
                            .into_iter()
                            .chain(expiry_detail)
                            .collect();
                        record(
                            self,
                            TokenEvent::Regenerated,
                            Some(value_digest),
                            None,
                            &current.description,
                            details,
                        )?;
                        any_change = true;
                    }
                    TokenChange::Validate { .. } | TokenChange::Invalidate => {
                        let active = matches!(edit.change, TokenChange::Validate { .. });
                        if active != current.active || new_expiry.is_some() {
                            changed.tag(ChangeTag::token(&current_digest));
                            diesel::update(tokens::table.filter(this_token))
                                .set(tokens::active.eq(active))
                                .execute(self)?;
                            let event = if active {
                                TokenEvent::Validated
                            } else {
                                TokenEvent::Invalidated
                            };
                            let details = expiry_detail.into_iter().collect();
                            record(self, event, None, None, &current.description, details)?;
                            any_change = true;
                        }
                    }
                    TokenChange::Retire => {
                        changed.tag(ChangeTag::token(&current_digest));
                        diesel::update(tokens::table.filter(this_token))
                            .set((
                                tokens::slot.eq(None::<i32>),
                                tokens::retired_at.eq(Some(now)),
                                tokens::active.eq(false),
                            ))
                            .execute(self)?;
                        record(
                            self,
                            TokenEvent::Retired,
                            None,
                            None,
                            &current.description,
                            Vec::new(),
                        )?;
                        any_change = true;
                    }
                }
                // No cached answer includes the description.
                if let Some(description) =
                    edit.description.filter(|new| *new != current.description)
                {
                    diesel::update(tokens::table.filter(this_token))
                        .set(tokens::description.eq(description))
                        .execute(self)?;
                    record(
                        self,
                        TokenEvent::DescriptionChanged,
                        None,
                        Some(description),
                        description,
                        vec![format!("description {description}")],
                    )?;
                    any_change = true;
                }
                let after = tokens::table
                    .filter(this_token)
                    .select(TokenRow::as_select())
                    .get_result(self)?;
                let token = self.managed_one(after)?;
                Ok(if any_change {
                    TokenChangeOutcome::Changed(token)
                } else {
                    TokenChangeOutcome::Unchanged(token)
                })
            }
        }
    };
}

impl_token_changes!(diesel::sqlite::SqliteConnection);
impl_token_changes!(diesel::pg::PgConnection);

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
