//! Queries on `admins`, `admin_sites` and `admin_tokens`, and the site lookups of the admin scope
//! (which sites an admin may see).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::audit::insert_audit;
use super::schema::{admin_sites, admin_tokens, admins, sites};
use super::sites::{SiteLookups, SiteRow};
use super::{secret_rotation, with_connection, write_transaction, Store, StoreError};
use crate::domain::admin::{Admin, AdminWithSites, Role};
use crate::domain::audit::{Action, Requester};
use crate::domain::rotation::{Overlap, SecretDigests};
use crate::domain::site::Site;

#[derive(Queryable, Selectable)]
#[diesel(table_name = admins)]
struct AdminRow {
    id: i64,
    client_id: String,
    name: String,
    role: String,
    enabled: bool,
    created_at: NaiveDateTime,
    previous_secret_valid_until: Option<NaiveDateTime>,
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
            previous_secret_valid_until: row.previous_secret_valid_until,
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
    /// A platform admin made a site manager needs sites.
    SitesRequired,
    /// The change would leave no enabled platform admin.
    LastPlatformAdmin,
}

/// What `PATCH /admin/v1/admins/{client_id}` changes; `None` leaves it as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdminUpdate<'a> {
    pub enabled: Option<bool>,
    pub role: Option<Role>,
    /// A site manager's sites: the full new set.
    pub site_keys: Option<&'a [String]>,
}

impl AdminUpdate<'_> {
    /// Whether it may take an enabled platform admin away (disable or demote).
    fn may_remove_platform_admin(&self) -> bool {
        self.enabled == Some(false) || self.role == Some(Role::SiteManager)
    }
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

    /// One admin and their sites, if it exists.
    pub fn admin(&self, client_id: &str) -> Result<Option<AdminWithSites>, StoreError> {
        with_connection!(self, |conn| {
            conn.admin_by_client_id(client_id)?
                .map(|admin| conn.with_sites(admin))
                .transpose()
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

    /// Changes an admin's enabled flag, role and (for a site manager) whole set of sites in one
    /// transaction, recording each effective change as the CLI's commands do. Disabling also
    /// deletes the admin's tokens, so enabling them again does not bring old tokens back. A change that
    /// would leave no enabled platform admin changes nothing (`LastPlatformAdmin`).
    ///
    /// That rule is checked here, not before: when the change may take a platform admin away,
    /// every enabled platform admin's row is locked before they are counted
    /// (`lock_enabled_platform_admins`). On PostgreSQL a second such change waits for the first
    /// and then counts what it committed, so two platform admins disabling each other cannot both
    /// succeed; SQLite's `BEGIN IMMEDIATE` runs the two one after the other anyway.
    pub fn update_admin(
        &self,
        client_id: &str,
        update: &AdminUpdate,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<AdminChange, StoreError> {
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let platform_admins = if update.may_remove_platform_admin() {
                conn.lock_enabled_platform_admins()?
            } else {
                Vec::new()
            };
            let Some(admin) = conn.lock_admin(client_id)? else {
                return Ok(AdminChange::UnknownAdmin);
            };
            let role = update.role.unwrap_or(admin.role);
            let enabled = update.enabled.unwrap_or(admin.enabled);
            let site_ids = match (role, update.site_keys) {
                (Role::PlatformAdmin, Some(_)) => return Ok(AdminChange::NotASiteManager),
                (Role::SiteManager, None) if admin.role == Role::PlatformAdmin => {
                    return Ok(AdminChange::SitesRequired)
                }
                (_, Some(keys)) => match conn.site_ids(keys)? {
                    Ok(ids) => Some(
                        ids.into_iter()
                            .zip(keys.iter().cloned())
                            .collect::<Vec<_>>(),
                    ),
                    Err(unknown) => return Ok(AdminChange::UnknownSite(unknown)),
                },
                (_, None) => None,
            };
            let was_platform_admin = admin.enabled && admin.manages_every_site();
            let stays_platform_admin = enabled && role == Role::PlatformAdmin;
            let others = platform_admins.iter().filter(|id| **id != admin.id).count();
            if was_platform_admin && !stays_platform_admin && others == 0 {
                return Ok(AdminChange::LastPlatformAdmin);
            }
            let this_admin = admins::table.filter(admins::id.eq(admin.id));
            if role != admin.role {
                diesel::update(this_admin)
                    .set(admins::role.eq(role.as_str()))
                    .execute(conn)?;
                if role == Role::PlatformAdmin {
                    diesel::delete(admin_sites::table.filter(admin_sites::admin_id.eq(admin.id)))
                        .execute(conn)?;
                }
                let detail = format!("role {} (was {})", role.as_str(), admin.role.as_str());
                let event = by.event(now, Action::AdminRoleChanged, client_id);
                insert_audit!(conn, &event.with_detail(detail))?;
            }
            if let Some(wanted) = site_ids {
                conn.replace_sites(admin.id, &wanted, by, now, client_id)?;
            }
            if enabled != admin.enabled {
                conn.set_enabled(admin.id, enabled)?;
                let action = if enabled {
                    Action::AdminEnabled
                } else {
                    Action::AdminDisabled
                };
                insert_audit!(conn, &by.event(now, action, client_id))?;
            }
            let updated = conn
                .admin_by_client_id(client_id)?
                .ok_or(StoreError::UnexpectedValue("admins: updated row gone"))?;
            Ok(AdminChange::Done(conn.with_sites(updated)?))
        })
    }

    /// What admin authentication needs: the admin and their secret digests.
    pub fn admin_authentication(
        &self,
        client_id: &str,
    ) -> Result<Option<(Admin, SecretDigests)>, StoreError> {
        with_connection!(self, |conn| {
            let found = admins::table
                .filter(admins::client_id.eq(client_id))
                .select((
                    AdminRow::as_select(),
                    admins::secret_digest,
                    admins::previous_secret_digest,
                ))
                .get_result::<(AdminRow, Vec<u8>, Option<Vec<u8>>)>(conn)
                .optional()?;
            found
                .map(|(row, current, previous)| {
                    let secrets =
                        SecretDigests::new(current, previous, row.previous_secret_valid_until);
                    Ok((Admin::try_from(row)?, secrets))
                })
                .transpose()
        })
    }

    /// Gives an admin a new secret digest (see [`secret_rotation!`]) and records the rotation with
    /// the overlap (never a secret). Admin tokens already issued keep working until they expire.
    pub fn rotate_admin_secret(
        &self,
        client_id: &str,
        secret_digest: &[u8],
        overlap: Overlap,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<AdminChange, StoreError> {
        let previous_valid_until = overlap.previous_valid_until(now);
        write_transaction!(self, |conn, changed| {
            // No answer about admins or their sessions is cached.
            changed.nothing();
            let Some(row) = diesel::update(admins::table.filter(admins::client_id.eq(client_id)))
                .set(secret_rotation!(
                    admins::secret_digest,
                    admins::previous_secret_digest,
                    admins::previous_secret_valid_until,
                    secret_digest,
                    previous_valid_until
                ))
                .returning(AdminRow::as_returning())
                .get_result(conn)
                .optional()?
            else {
                return Ok(AdminChange::UnknownAdmin);
            };
            let event = by
                .event(now, Action::AdminSecretRotated, client_id)
                .with_detail(format!("overlap {} s", overlap.secs()));
            insert_audit!(conn, &event)?;
            Ok(AdminChange::Done(conn.with_sites(Admin::try_from(row)?)?))
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

/// Lookups that run inside the transactions above, written once and compiled per backend.
trait AdminLookups {
    fn with_sites(&mut self, admin: Admin) -> Result<AdminWithSites, StoreError>;
    fn admin_by_client_id(&mut self, client_id: &str) -> Result<Option<Admin>, StoreError>;
    /// The admin, its row locked until the transaction ends (a no-op `UPDATE … RETURNING`).
    fn lock_admin(&mut self, client_id: &str) -> Result<Option<Admin>, StoreError>;
    /// Enables or disables an admin; disabling also deletes their admin tokens, so they stop
    /// working at once and enabling the admin again does not bring them back.
    fn set_enabled(&mut self, admin_id: i64, enabled: bool) -> Result<(), StoreError>;
    /// Makes `wanted` (site id, site key) a site manager's whole set of sites, recording what was
    /// assigned and unassigned as `admin assign` and `admin unassign` do.
    fn replace_sites(
        &mut self,
        admin_id: i64,
        wanted: &[(i64, String)],
        by: &Requester,
        now: NaiveDateTime,
        client_id: &str,
    ) -> Result<(), StoreError>;
}

/// The ids of the enabled platform admins, each row locked until the transaction ends: the count
/// that `update_admin`'s last-platform-admin rule reads cannot change under it.
trait LockPlatformAdmins {
    fn lock_enabled_platform_admins(&mut self) -> Result<Vec<i64>, StoreError>;
}

impl LockPlatformAdmins for diesel::pg::PgConnection {
    fn lock_enabled_platform_admins(&mut self) -> Result<Vec<i64>, StoreError> {
        Ok(admins::table
            .filter(admins::role.eq(Role::PlatformAdmin.as_str()))
            .filter(admins::enabled.eq(true))
            .order(admins::id)
            .select(admins::id)
            .for_update()
            .load(self)?)
    }
}

impl LockPlatformAdmins for diesel::sqlite::SqliteConnection {
    /// No row locks in SQLite: the write transaction (`BEGIN IMMEDIATE`) already excludes every
    /// other writer.
    fn lock_enabled_platform_admins(&mut self) -> Result<Vec<i64>, StoreError> {
        Ok(admins::table
            .filter(admins::role.eq(Role::PlatformAdmin.as_str()))
            .filter(admins::enabled.eq(true))
            .select(admins::id)
            .load(self)?)
    }
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

            fn lock_admin(&mut self, client_id: &str) -> Result<Option<Admin>, StoreError> {
                diesel::update(admins::table.filter(admins::client_id.eq(client_id)))
                    .set(admins::client_id.eq(admins::client_id))
                    .returning(AdminRow::as_returning())
                    .get_result(self)
                    .optional()?
                    .map(Admin::try_from)
                    .transpose()
            }

            fn set_enabled(&mut self, admin_id: i64, enabled: bool) -> Result<(), StoreError> {
                diesel::update(admins::table.filter(admins::id.eq(admin_id)))
                    .set(admins::enabled.eq(enabled))
                    .execute(self)?;
                if !enabled {
                    diesel::delete(admin_tokens::table.filter(admin_tokens::admin_id.eq(admin_id)))
                        .execute(self)?;
                }
                Ok(())
            }

            fn replace_sites(
                &mut self,
                admin_id: i64,
                wanted: &[(i64, String)],
                by: &Requester,
                now: NaiveDateTime,
                client_id: &str,
            ) -> Result<(), StoreError> {
                let current: Vec<(i64, String)> = admin_sites::table
                    .inner_join(sites::table)
                    .filter(admin_sites::admin_id.eq(admin_id))
                    .select((sites::id, sites::site_key))
                    .load(self)?;
                let mut added: Vec<&(i64, String)> = wanted
                    .iter()
                    .filter(|site| !current.contains(site))
                    .collect();
                added.sort_unstable();
                added.dedup();
                let removed: Vec<&(i64, String)> = current
                    .iter()
                    .filter(|site| !wanted.contains(site))
                    .collect();
                for (site_id, _) in &added {
                    diesel::insert_into(admin_sites::table)
                        .values((
                            admin_sites::admin_id.eq(admin_id),
                            admin_sites::site_id.eq(site_id),
                        ))
                        .on_conflict_do_nothing()
                        .execute(self)?;
                }
                for (site_id, _) in &removed {
                    diesel::delete(
                        admin_sites::table
                            .filter(admin_sites::admin_id.eq(admin_id))
                            .filter(admin_sites::site_id.eq(site_id)),
                    )
                    .execute(self)?;
                }
                for (action, sites) in [
                    (Action::AdminSitesAssigned, added),
                    (Action::AdminSitesUnassigned, removed),
                ] {
                    if sites.is_empty() {
                        continue;
                    }
                    let mut keys: Vec<&str> = sites.iter().map(|(_, key)| key.as_str()).collect();
                    keys.sort_unstable();
                    let event = by.event(now, action, client_id);
                    let conn = &mut *self;
                    insert_audit!(
                        conn,
                        &event.with_detail(format!("sites {}", keys.join(", ")))
                    )?;
                }
                Ok(())
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
