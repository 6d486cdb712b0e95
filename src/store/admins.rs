//! Queries on `admins`, `admin_sites` and `admin_tokens`, and the site lookups of the admin scope
//! (which sites an admin may see).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::audit::insert_audit;
use super::schema::{admin_sites, admin_tokens, admins, sites, tokens};
use super::sites::{SiteLookups, SiteRow};
use super::{with_connection, write_transaction, Store, StoreError};
use crate::domain::admin::{Admin, AdminWithSites, Role};
use crate::domain::audit::{Action, Requester};
use crate::domain::site::Site;
use crate::domain::site::{SiteQuery, SiteSummary};

#[derive(Queryable, Selectable)]
#[diesel(table_name = admins)]
struct AdminRow {
    id: i64,
    client_id: String,
    name: String,
    role: String,
    enabled: bool,
    created_at: NaiveDateTime,
}

impl TryFrom<AdminRow> for Admin {
    type Error = StoreError;

    fn try_from(row: AdminRow) -> Result<Self, StoreError> {
        let role = Role::parse(&row.role).ok_or(StoreError::UnexpectedValue("admins.role"))?;
        Ok(Admin {
            id: row.id,
            client_id: row.client_id,
            name: row.name,
            role,
            enabled: row.enabled,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug)]
pub enum AdminChange {
    Done(AdminWithSites),
    UnknownAdmin,
    /// This site key names no site; nothing was changed.
    UnknownSite(String),
    /// The name belongs to another admin already.
    NameTaken,
    /// Platform admins manage every site; sites cannot be assigned to them.
    NotASiteManager,
}

/// A new admin's row, in the only form that may be stored (the secret as its digest).
#[derive(Debug, Clone, Copy)]
pub struct NewAdmin<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub secret_digest: &'a [u8],
}

impl Store {
    /// Creates an admin and their site assignments in one transaction.
    pub fn insert_admin(
        &self,
        new: &NewAdmin,
        site_keys: &[String],
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<AdminChange, StoreError> {
        let NewAdmin {
            client_id,
            name,
            role,
            secret_digest,
        } = *new;
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let site_ids = match conn.site_ids(site_keys)? {
                Ok(ids) => ids,
                Err(unknown) => return Ok(AdminChange::UnknownSite(unknown)),
            };
            let inserted = diesel::insert_into(admins::table)
                .values((
                    admins::client_id.eq(client_id),
                    admins::name.eq(name),
                    admins::role.eq(role.as_str()),
                    admins::secret_digest.eq(secret_digest),
                    admins::enabled.eq(true),
                    admins::created_at.eq(now),
                ))
                .returning(AdminRow::as_returning())
                .get_result(conn);
            let admin = match inserted {
                Ok(row) => Admin::try_from(row)?,
                Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                    return Ok(AdminChange::NameTaken)
                }
                Err(other) => return Err(other.into()),
            };
            for site_id in site_ids {
                diesel::insert_into(admin_sites::table)
                    .values((
                        admin_sites::admin_id.eq(admin.id),
                        admin_sites::site_id.eq(site_id),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            }
            let created = conn.with_sites(admin)?;
            let event = by
                .event(now, Action::AdminCreated, client_id)
                .with_detail(admin_detail(&created));
            insert_audit!(conn, &event)?;
            Ok(AdminChange::Done(created))
        })
    }

    pub fn list_admins(&self) -> Result<Vec<AdminWithSites>, StoreError> {
        with_connection!(self, |conn| {
            let rows = admins::table
                .order(admins::id)
                .select(AdminRow::as_select())
                .load(conn)?;
            rows.into_iter()
                .map(|row| conn.with_sites(Admin::try_from(row)?))
                .collect()
        })
    }

    /// Assigns (`assign = true`) or unassigns sites of a site manager, all or none.
    pub fn change_admin_sites(
        &self,
        client_id: &str,
        site_keys: &[String],
        assign: bool,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<AdminChange, StoreError> {
        let action = if assign {
            Action::AdminSitesAssigned
        } else {
            Action::AdminSitesUnassigned
        };
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let Some(admin) = conn.admin_by_client_id(client_id)? else {
                return Ok(AdminChange::UnknownAdmin);
            };
            if admin.manages_every_site() {
                return Ok(AdminChange::NotASiteManager);
            }
            let site_ids = match conn.site_ids(site_keys)? {
                Ok(ids) => ids,
                Err(unknown) => return Ok(AdminChange::UnknownSite(unknown)),
            };
            for site_id in site_ids {
                let assignment = (
                    admin_sites::admin_id.eq(admin.id),
                    admin_sites::site_id.eq(site_id),
                );
                if assign {
                    diesel::insert_into(admin_sites::table)
                        .values(assignment)
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                } else {
                    diesel::delete(admin_sites::table.filter(assignment.0).filter(assignment.1))
                        .execute(conn)?;
                }
            }
            let event = by
                .event(now, action, client_id)
                .with_detail(format!("sites {}", site_keys.join(", ")));
            insert_audit!(conn, &event)?;
            Ok(AdminChange::Done(conn.with_sites(admin)?))
        })
    }

    /// Enables or disables an admin. Disabling also deletes their admin tokens, so enabling them
    /// again does not bring old tokens back.
    pub fn set_admin_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<AdminChange, StoreError> {
        let action = if enabled {
            Action::AdminEnabled
        } else {
            Action::AdminDisabled
        };
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let updated = diesel::update(admins::table.filter(admins::client_id.eq(client_id)))
                .set(admins::enabled.eq(enabled))
                .returning(AdminRow::as_returning())
                .get_result(conn)
                .optional()?;
            let Some(row) = updated else {
                return Ok(AdminChange::UnknownAdmin);
            };
            let admin = Admin::try_from(row)?;
            if !enabled {
                diesel::delete(admin_tokens::table.filter(admin_tokens::admin_id.eq(admin.id)))
                    .execute(conn)?;
            }
            insert_audit!(conn, &by.event(now, action, client_id))?;
            Ok(AdminChange::Done(conn.with_sites(admin)?))
        })
    }

    /// What admin authentication needs: the admin and their secret digest.
    pub fn admin_authentication(
        &self,
        client_id: &str,
    ) -> Result<Option<(Admin, Vec<u8>)>, StoreError> {
        with_connection!(self, |conn| {
            let found = admins::table
                .filter(admins::client_id.eq(client_id))
                .select((AdminRow::as_select(), admins::secret_digest))
                .get_result::<(AdminRow, Vec<u8>)>(conn)
                .optional()?;
            found
                .map(|(row, digest)| Ok((Admin::try_from(row)?, digest)))
                .transpose()
        })
    }

    /// Stores a new admin token's digest if the admin is still enabled (`false` when not), and
    /// deletes tokens that have expired (they would never be accepted again).
    ///
    /// The admin's row is locked first (a no-op `UPDATE`), so a concurrent `disable`, which deletes
    /// the admin's tokens, either runs before (and this insert is refused) or waits and then
    /// deletes this token too: a token issued to a disabled admin can never come back when the
    /// admin is enabled again.
    pub fn insert_admin_token(
        &self,
        admin_id: i64,
        value_digest: &[u8],
        by: &Requester,
        now: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let still_enabled = diesel::update(
                admins::table
                    .filter(admins::id.eq(admin_id))
                    .filter(admins::enabled.eq(true)),
            )
            .set(admins::enabled.eq(true))
            .execute(conn)?
                == 1;
            if !still_enabled {
                return Ok(false);
            }
            diesel::delete(admin_tokens::table.filter(admin_tokens::expires_at.le(now)))
                .execute(conn)?;
            diesel::insert_into(admin_tokens::table)
                .values((
                    admin_tokens::admin_id.eq(admin_id),
                    admin_tokens::value_digest.eq(value_digest),
                    admin_tokens::issued_at.eq(now),
                    admin_tokens::expires_at.eq(expires_at),
                ))
                .execute(conn)?;
            let target = by.actor.id.clone().unwrap_or_default();
            insert_audit!(conn, &by.event(now, Action::AdminSignedIn, target))?;
            Ok(true)
        })
    }

    /// Deletes `admin_id`'s admin token with this digest; `false` when it has none such.
    pub fn revoke_admin_token(
        &self,
        admin_id: i64,
        value_digest: &[u8],
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let deleted = diesel::delete(
                admin_tokens::table
                    .filter(admin_tokens::admin_id.eq(admin_id))
                    .filter(admin_tokens::value_digest.eq(value_digest)),
            )
            .execute(conn)?;
            if deleted == 1 {
                let target = by.actor.id.clone().unwrap_or_default();
                insert_audit!(conn, &by.event(now, Action::AdminTokenRevoked, target))?;
            }
            Ok(deleted == 1)
        })
    }

    /// The enabled admin holding the unexpired admin token with this digest.
    pub fn admin_for_token(
        &self,
        value_digest: &[u8],
        now: NaiveDateTime,
    ) -> Result<Option<Admin>, StoreError> {
        with_connection!(self, |conn| {
            let found = admin_tokens::table
                .inner_join(admins::table)
                .filter(admin_tokens::value_digest.eq(value_digest))
                .filter(admin_tokens::expires_at.gt(now))
                .filter(admins::enabled.eq(true))
                .select(AdminRow::as_select())
                .get_result(conn)
                .optional()?;
            found.map(Admin::try_from).transpose()
        })
    }

    /// The sites `admin` may manage that match `query`, by name, and how many match in all.
    pub fn sites_for_admin(
        &self,
        admin: &Admin,
        query: &SiteQuery,
    ) -> Result<(Vec<SiteSummary>, i64), StoreError> {
        let pattern = query.search.map(like_pattern);
        let every_site = admin.manages_every_site();
        with_connection!(self, |conn| {
            // Boxed queries are per backend, so the filter is built inside the per-backend body.
            let visible = || {
                let mut filtered = sites::table.into_boxed();
                if !every_site {
                    let assigned = admin_sites::table
                        .filter(admin_sites::admin_id.eq(admin.id))
                        .select(admin_sites::site_id);
                    filtered = filtered.filter(sites::id.eq_any(assigned));
                }
                if let Some(enabled) = query.enabled {
                    filtered = filtered.filter(sites::enabled.eq(enabled));
                }
                if let Some(pattern) = &pattern {
                    filtered = filtered.filter(
                        lower(sites::name)
                            .like(pattern.clone())
                            .escape('\\')
                            .or(lower(sites::site_key).like(pattern.clone()).escape('\\')),
                    );
                }
                filtered
            };
            let total = visible().count().get_result::<i64>(conn)?;
            let rows = visible()
                .order((sites::name, sites::site_key))
                .limit(query.limit)
                .offset(query.offset)
                .select(SiteRow::as_select())
                .load(conn)?;
            let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
            let counts: std::collections::HashMap<i64, i64> = tokens::table
                .filter(tokens::site_id.eq_any(&ids))
                .group_by(tokens::site_id)
                .select((tokens::site_id, diesel::dsl::count_star()))
                .load::<(i64, i64)>(conn)?
                .into_iter()
                .collect();
            let summaries = rows
                .into_iter()
                .map(|row| SiteSummary {
                    token_count: counts.get(&row.id).copied().unwrap_or(0),
                    site: row.into(),
                })
                .collect();
            Ok((summaries, total))
        })
    }

    /// The site with this key if `admin` may manage it.
    pub fn site_for_admin(
        &self,
        admin: &Admin,
        site_key: &str,
    ) -> Result<Option<Site>, StoreError> {
        let every_site = admin.manages_every_site();
        let assigned = admin_sites::table
            .filter(admin_sites::admin_id.eq(admin.id))
            .select(admin_sites::site_id);
        with_connection!(self, |conn| {
            let mut found = sites::table
                .filter(sites::site_key.eq(site_key))
                .into_boxed();
            if !every_site {
                found = found.filter(sites::id.eq_any(assigned));
            }
            Ok(found
                .select(SiteRow::as_select())
                .get_result(conn)
                .optional()?
                .map(Site::from))
        })
    }
}

diesel::define_sql_function! {
    /// SQL `lower()`. SQLite's built-in folds ASCII letters only, PostgreSQL's every letter, so
    /// SQLite connections replace it with Rust's `to_lowercase` (`SqlitePragmas`): site search
    /// then matches the same sites on both backends.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// `%search%` in lower case, with LIKE's wildcards escaped so they match themselves.
fn like_pattern(search: &str) -> String {
    let mut pattern = String::with_capacity(search.len() + 2);
    pattern.push('%');
    for c in search.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Lookups that run inside the transactions above, written once and compiled per backend.
trait AdminLookups {
    fn with_sites(&mut self, admin: Admin) -> Result<AdminWithSites, StoreError>;
    fn admin_by_client_id(&mut self, client_id: &str) -> Result<Option<Admin>, StoreError>;
}

macro_rules! impl_admin_lookups {
    ($connection:ty) => {
        impl AdminLookups for $connection {
            fn with_sites(&mut self, admin: Admin) -> Result<AdminWithSites, StoreError> {
                let site_keys = admin_sites::table
                    .inner_join(sites::table)
                    .filter(admin_sites::admin_id.eq(admin.id))
                    .order(sites::site_key)
                    .select(sites::site_key)
                    .load::<String>(self)?;
                Ok(AdminWithSites { admin, site_keys })
            }

            fn admin_by_client_id(&mut self, client_id: &str) -> Result<Option<Admin>, StoreError> {
                admins::table
                    .filter(admins::client_id.eq(client_id))
                    .select(AdminRow::as_select())
                    .get_result(self)
                    .optional()?
                    .map(Admin::try_from)
                    .transpose()
            }
        }
    };
}

impl_admin_lookups!(diesel::sqlite::SqliteConnection);
impl_admin_lookups!(diesel::pg::PgConnection);

/// An admin's role and sites, as an audit event's detail.
fn admin_detail(admin: &AdminWithSites) -> String {
    let sites = if admin.admin.manages_every_site() {
        "every site".to_string()
    } else {
        admin.site_keys.join(", ")
    };
    format!(
        "name {}, role {}, sites {sites}",
        admin.admin.name,
        admin.admin.role.as_str()
    )
}
