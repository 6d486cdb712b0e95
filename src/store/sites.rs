//! Queries on `sites`.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::insert_audit;
use super::schema::{sites, tokens};
use super::{secret_rotation, with_connection, write_transaction, ChangeTag, Store, StoreError};
use crate::domain::audit::{Action, Requester};
use crate::domain::rotation::{Overlap, SecretDigests};
use crate::domain::site::{Site, SiteSummary};

#[derive(Queryable, Selectable)]
#[diesel(table_name = sites)]
pub(super) struct SiteRow {
    pub id: i64,
    site_key: String,
    name: String,
    enabled: bool,
    created_at: NaiveDateTime,
    previous_auth_key_valid_until: Option<NaiveDateTime>,
}

impl From<SiteRow> for Site {
    fn from(row: SiteRow) -> Self {
        Site {
            id: row.id,
            site_key: row.site_key,
            name: row.name,
            enabled: row.enabled,
            created_at: row.created_at,
            previous_auth_key_valid_until: row.previous_auth_key_valid_until,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = sites)]
struct NewSiteRow<'a> {
    site_key: &'a str,
    name: &'a str,
    auth_key_digest: &'a [u8],
    enabled: bool,
    created_at: NaiveDateTime,
}

/// What client authentication needs to know about a site.
#[derive(Debug, Clone)]
pub struct SiteAuthentication {
    pub site: Site,
    pub auth_keys: SecretDigests,
}

impl Store {
    pub fn insert_site(
        &self,
        site_key: &str,
        name: &str,
        auth_key_digest: &[u8],
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<Site, StoreError> {
        let row = NewSiteRow {
            site_key,
            name,
            auth_key_digest,
            enabled: true,
            created_at: now,
        };
        write_transaction!(self, |conn, changed| {
            changed.tag(ChangeTag::site_key(site_key));
            let inserted = diesel::insert_into(sites::table)
                .values(&row)
                .returning(SiteRow::as_returning())
                .get_result(conn)?;
            let event = by
                .event(now, Action::SiteCreated, site_key)
                .with_detail(format!("name {name}"));
            insert_audit!(conn, &event)?;
            Ok(Site::from(inserted))
        })
    }

    pub fn site_authentication(
        &self,
        site_key: &str,
    ) -> Result<Option<SiteAuthentication>, StoreError> {
        with_connection!(self, |conn| {
            let found = sites::table
                .filter(sites::site_key.eq(site_key))
                .select((
                    SiteRow::as_select(),
                    sites::auth_key_digest,
                    sites::previous_auth_key_digest,
                ))
                .get_result::<(SiteRow, Vec<u8>, Option<Vec<u8>>)>(conn)
                .optional()?;
            Ok(found.map(|(row, current, previous)| {
                let auth_keys =
                    SecretDigests::new(current, previous, row.previous_auth_key_valid_until);
                SiteAuthentication {
                    site: row.into(),
                    auth_keys,
                }
            }))
        })
    }

    pub fn site_by_name(&self, name: &str) -> Result<Option<Site>, StoreError> {
        with_connection!(self, |conn| {
            let found = sites::table
                .filter(sites::name.eq(name))
                .order(sites::id)
                .select(SiteRow::as_select())
                .first(conn)
                .optional()?;
            Ok(found.map(Site::from))
        })
    }

    pub fn list_sites(&self) -> Result<Vec<SiteSummary>, StoreError> {
        with_connection!(self, |conn| {
            let rows = sites::table
                .order(sites::id)
                .select(SiteRow::as_select())
                .load(conn)?;
            let counts: HashMap<i64, i64> = tokens::table
                .filter(tokens::slot.is_not_null())
                .group_by(tokens::site_id)
                .select((tokens::site_id, diesel::dsl::count_star()))
                .load::<(i64, i64)>(conn)?
                .into_iter()
                .collect();
            Ok(rows
                .into_iter()
                .map(|row| SiteSummary {
                    token_count: counts.get(&row.id).copied().unwrap_or(0),
                    site: row.into(),
                })
                .collect())
        })
    }

    /// Gives the site a new auth key digest (see [`secret_rotation!`]) and records the rotation
    /// with the overlap (never a key). `None` when no site has this key.
    pub fn rotate_auth_key_digest(
        &self,
        site_key: &str,
        auth_key_digest: &[u8],
        overlap: Overlap,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<Option<Site>, StoreError> {
        let previous_valid_until = overlap.previous_valid_until(now);
        write_transaction!(self, |conn, changed| {
            let rotated = diesel::update(sites::table.filter(sites::site_key.eq(site_key)))
                .set(secret_rotation!(
                    sites::auth_key_digest,
                    sites::previous_auth_key_digest,
                    sites::previous_auth_key_valid_until,
                    auth_key_digest,
                    previous_valid_until
                ))
                .returning(SiteRow::as_returning())
                .get_result(conn)
                .optional()?;
            let Some(rotated) = rotated else {
                changed.nothing();
                return Ok(None);
            };
            // Site authentication is cached by site key, and no other cached answer holds
            // anything a rotation changes.
            changed.tag(ChangeTag::site_key(site_key));
            let event = by
                .event(now, Action::AuthKeyRotated, site_key)
                .with_detail(format!("overlap {} s", overlap.secs()));
            insert_audit!(conn, &event)?;
            Ok(Some(Site::from(rotated)))
        })
    }

    /// Renames and/or enables or disables a site in one transaction, each effective change
    /// recorded; `None` when no site has this key.
    pub fn update_site(
        &self,
        site_key: &str,
        name: Option<&str>,
        enabled: Option<bool>,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<Option<Site>, StoreError> {
        write_transaction!(self, |conn, changed| {
            changed.nothing();
            let this_site = sites::table.filter(sites::site_key.eq(site_key));
            // A no-op update locks the row, so concurrent changes apply one after the other.
            let Some(current) = diesel::update(this_site)
                .set(sites::site_key.eq(sites::site_key))
                .returning(SiteRow::as_returning())
                .get_result(conn)
                .optional()?
            else {
                return Ok(None);
            };
            let current = Site::from(current);
            // Both change answers: the name is part of every introspection answer about the
            // site's tokens, the enabled flag of those and of its authentication.
            let mut touched = || {
                changed.tag(ChangeTag::site(current.id));
                changed.tag(ChangeTag::site_key(site_key));
            };
            if let Some(name) = name.filter(|name| *name != current.name) {
                touched();
                diesel::update(this_site)
                    .set(sites::name.eq(name))
                    .execute(conn)?;
                let event = by
                    .event(now, Action::SiteRenamed, site_key)
                    .with_detail(format!("name {name}"));
                insert_audit!(conn, &event)?;
            }
            if let Some(enabled) = enabled.filter(|enabled| *enabled != current.enabled) {
                touched();
                diesel::update(this_site)
                    .set(sites::enabled.eq(enabled))
                    .execute(conn)?;
                let action = if enabled {
                    Action::SiteEnabled
                } else {
                    Action::SiteDisabled
                };
                insert_audit!(conn, &by.event(now, action, site_key))?;
            }
            let updated = this_site.select(SiteRow::as_select()).get_result(conn)?;
            Ok(Some(Site::from(updated)))
        })
    }

    /// Enables or disables a site; `false` when no such site exists.
    pub fn set_site_enabled(
        &self,
        site_key: &str,
        enabled: bool,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        let action = if enabled {
            Action::SiteEnabled
        } else {
            Action::SiteDisabled
        };
        write_transaction!(self, |conn, changed| {
            let updated = diesel::update(sites::table.filter(sites::site_key.eq(site_key)))
                .set(sites::enabled.eq(enabled))
                .returning(sites::id)
                .get_result::<i64>(conn)
                .optional()?;
            let Some(site_id) = updated else {
                changed.nothing();
                return Ok(false);
            };
            changed.tag(ChangeTag::site(site_id));
            changed.tag(ChangeTag::site_key(site_key));
            insert_audit!(conn, &by.event(now, action, site_key))?;
            Ok(true)
        })
    }
}

/// Site lookups that run inside other modules' write transactions (admin assignments, resource
/// servers' site limits), written once and compiled per backend.
pub(super) trait SiteLookups {
    /// The ids of these sites, in order, or the first site key that names no site.
    fn site_ids(&mut self, site_keys: &[String]) -> Result<Result<Vec<i64>, String>, StoreError>;
}

macro_rules! impl_site_lookups {
    ($connection:ty) => {
        impl SiteLookups for $connection {
            fn site_ids(
                &mut self,
                site_keys: &[String],
            ) -> Result<Result<Vec<i64>, String>, StoreError> {
                let mut ids = Vec::with_capacity(site_keys.len());
                for site_key in site_keys {
                    let id = sites::table
                        .filter(sites::site_key.eq(site_key))
                        .select(sites::id)
                        .get_result::<i64>(self)
                        .optional()?;
                    match id {
                        Some(id) => ids.push(id),
                        None => return Ok(Err(site_key.clone())),
                    }
                }
                Ok(Ok(ids))
            }
        }
    };
}

impl_site_lookups!(diesel::sqlite::SqliteConnection);
impl_site_lookups!(diesel::pg::PgConnection);
