//! Queries on `tokens` and `token_events`. Every change to a token and the history entry that
//! records it are written in one transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::insert_audit;
use super::schema::{sites, token_events, tokens};
use super::{write_transaction, ChangeTag, Store, StoreError};
use crate::domain::audit::{Action, Requester};
use crate::domain::history::{Actor, TokenEvent};
use crate::domain::slots::PRIMARY_SLOT;

/// The primary slot of a site, as needed to hand its value back.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub struct PrimaryToken {
    pub id: i64,
    pub active: bool,
    pub value_digest: Vec<u8>,
    pub sealed_value: Option<Vec<u8>>,
}

/// A freshly minted primary value, in the only forms that may be stored.
#[derive(Debug)]
pub struct NewPrimaryValue {
    pub value_digest: Vec<u8>,
    pub sealed_value: Vec<u8>,
    pub value_hint: String,
    pub description: String,
}

#[derive(Debug)]
pub enum PrimaryTokenOutcome {
    /// The site already had an active primary token (another request may have minted it a moment
    /// ago); the offered value was not stored.
    AlreadyActive(PrimaryToken),
    /// The offered value is now the site's active primary token.
    Minted,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InvalidationOutcome {
    Invalidated,
    /// The value was this site's primary token once and is no longer active.
    AlreadyInvalid,
    /// The value was never this site's primary token.
    NotThisSitesPrimary,
}

/// One history line to append.
#[derive(Insertable)]
#[diesel(table_name = token_events)]
pub(super) struct NewEventRow<'a> {
    pub token_id: i64,
    pub occurred_at: NaiveDateTime,
    pub event: &'static str,
    pub actor_kind: &'static str,
    pub actor_name: &'a str,
    pub value_digest: Option<&'a [u8]>,
    pub detail: Option<&'a str>,
    /// The token's description as the event leaves it.
    pub description: Option<&'a str>,
}

impl<'a> NewEventRow<'a> {
    pub(super) fn new(
        token_id: i64,
        event: TokenEvent,
        actor: &'a Actor,
        description: &'a str,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            token_id,
            occurred_at: now,
            event: event.as_str(),
            actor_kind: actor.kind(),
            actor_name: actor.name(),
            value_digest: None,
            detail: None,
            description: Some(description),
        }
    }
}

/// Marks the active token among `$tokens` (a filtered `tokens` query) inactive and records
/// `invalidated` by `$actor` in its history; the token's id, or `None` when none was active. A
/// macro, so it compiles for whichever backend the surrounding transaction runs on.
macro_rules! invalidate_recorded {
    ($conn:expr, $tokens:expr, $actor:expr, $now:expr) => {{
        let invalidated = diesel::update($tokens.filter(tokens::active.eq(true)))
            .set(tokens::active.eq(false))
            .returning((tokens::id, tokens::description))
            .get_result::<(i64, String)>($conn)
            .optional()?;
        if let Some((token_id, description)) = &invalidated {
            diesel::insert_into(token_events::table)
                .values(&NewEventRow::new(
                    *token_id,
                    TokenEvent::Invalidated,
                    $actor,
                    description,
                    $now,
                ))
                .execute($conn)?;
        }
        Ok::<_, StoreError>(invalidated.map(|(token_id, _)| token_id))
    }};
}

impl Store {
    /// Stores `offered` as the site's primary token unless an active one exists.
    ///
    /// Correct under any number of concurrent callers without a read-then-write race: the slot row
    /// is created with `INSERT … ON CONFLICT DO NOTHING` on `UNIQUE (site_id, slot)`, and an
    /// invalidated slot is refilled with `UPDATE … WHERE active = false`; whoever loses either race
    /// reads the winner's row on the next pass.
    pub fn mint_primary_token(
        &self,
        site_id: i64,
        offered: &NewPrimaryValue,
        actor: &Actor,
        now: NaiveDateTime,
    ) -> Result<PrimaryTokenOutcome, StoreError> {
        let primary_slot = tokens::site_id
            .eq(site_id)
            .and(tokens::slot.eq(PRIMARY_SLOT));
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            for _ in 0..3 {
                let current = tokens::table
                    .filter(primary_slot)
                    .select(PrimaryToken::as_select())
                    .get_result(conn)
                    .optional()?;
                let minted_id = match current {
                    Some(token) if token.active => {
                        return Ok(PrimaryTokenOutcome::AlreadyActive(token))
                    }
                    Some(token) => {
                        let refilled = diesel::update(
                            tokens::table
                                .filter(tokens::id.eq(token.id).and(tokens::active.eq(false))),
                        )
                        .set((
                            tokens::value_digest.eq(&offered.value_digest),
                            tokens::sealed_value.eq(Some(&offered.sealed_value)),
                            tokens::value_hint.eq(&offered.value_hint),
                            tokens::description.eq(&offered.description),
                            tokens::active.eq(true),
                            tokens::generated_at.eq(now),
                        ))
                        .execute(conn)?;
                        (refilled == 1).then_some(token.id)
                    }
                    None => diesel::insert_into(tokens::table)
                        .values((
                            tokens::site_id.eq(site_id),
                            tokens::slot.eq(PRIMARY_SLOT),
                            tokens::description.eq(&offered.description),
                            tokens::value_digest.eq(&offered.value_digest),
                            tokens::sealed_value.eq(Some(&offered.sealed_value)),
                            tokens::value_hint.eq(&offered.value_hint),
                            tokens::active.eq(true),
                            tokens::generated_at.eq(now),
                        ))
                        .on_conflict_do_nothing()
                        .returning(tokens::id)
                        .get_result::<i64>(conn)
                        .optional()?,
                };
                if let Some(token_id) = minted_id {
                    changed.tag(ChangeTag::site(site_id));
                    changed.tag(ChangeTag::token(&offered.value_digest));
                    let event = NewEventRow {
                        value_digest: Some(&offered.value_digest),
                        ..NewEventRow::new(
                            token_id,
                            TokenEvent::Created,
                            actor,
                            &offered.description,
                            now,
                        )
                    };
                    diesel::insert_into(token_events::table)
                        .values(&event)
                        .execute(conn)?;
                    return Ok(PrimaryTokenOutcome::Minted);
                }
            }
            Err(StoreError::Contention("primary token minting"))
        })
    }

    /// Marks the site's primary token inactive if `value_digest` is its current value.
    pub fn invalidate_primary_token(
        &self,
        site_id: i64,
        value_digest: &[u8],
        actor: &Actor,
        now: NaiveDateTime,
    ) -> Result<InvalidationOutcome, StoreError> {
        let primary_slot = tokens::site_id
            .eq(site_id)
            .and(tokens::slot.eq(PRIMARY_SLOT));
        write_transaction!(self, |conn, changed| {
            let current = tokens::table
                .filter(primary_slot)
                .filter(tokens::value_digest.eq(value_digest));
            if invalidate_recorded!(conn, current, actor, now)?.is_some() {
                changed.tag(ChangeTag::site(site_id));
                return Ok(InvalidationOutcome::Invalidated);
            }
            changed.nothing();
            let ever_minted_here = token_events::table
                .inner_join(tokens::table)
                .filter(primary_slot)
                .filter(token_events::value_digest.eq(value_digest))
                .select(token_events::id)
                .first::<i64>(conn)
                .optional()?
                .is_some();
            Ok(if ever_minted_here {
                InvalidationOutcome::AlreadyInvalid
            } else {
                InvalidationOutcome::NotThisSitesPrimary
            })
        })
    }

    /// The emergency brake: marks the site's primary token inactive whatever its value, recorded
    /// in its history as `actor`'s and in the audit trail as `by`'s. `None` when no site has this
    /// key; `Some(false)` when it has no active primary token.
    pub fn invalidate_site_primary(
        &self,
        site_key: &str,
        actor: &Actor,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<Option<bool>, StoreError> {
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let Some(site_id) = sites::table
                .filter(sites::site_key.eq(site_key))
                .select(sites::id)
                .get_result::<i64>(conn)
                .optional()?
            else {
                return Ok(None);
            };
            let primary = tokens::table
                .filter(tokens::site_id.eq(site_id))
                .filter(tokens::slot.eq(PRIMARY_SLOT));
            let Some(token_id) = invalidate_recorded!(conn, primary, actor, now)? else {
                return Ok(Some(false));
            };
            changed.tag(ChangeTag::site(site_id));
            let event = by.event(
                now,
                Action::PrimaryTokenInvalidated,
                format!("{site_key}/tokens/{token_id}"),
            );
            insert_audit!(conn, &event)?;
            Ok(Some(true))
        })
    }

    /// The site's primary slot if its token is active; a plain read, no transaction.
    pub fn active_primary_token(&self, site_id: i64) -> Result<Option<PrimaryToken>, StoreError> {
        super::with_connection!(self, |conn| {
            Ok(tokens::table
                .filter(tokens::site_id.eq(site_id))
                .filter(tokens::slot.eq(PRIMARY_SLOT))
                .filter(tokens::active.eq(true))
                .select(PrimaryToken::as_select())
                .get_result(conn)
                .optional()?)
        })
    }
}
