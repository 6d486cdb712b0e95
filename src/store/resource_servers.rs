//! Queries on `resource_servers` and `resource_server_sites`: the sites whose tokens a resource
//! server limited to sites may introspect.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::insert_audit;
use super::schema::{resource_server_sites, resource_servers, sites};
use super::sites::SiteLookups;
use super::{secret_rotation, with_connection, write_transaction, ChangeTag, Store, StoreError};
use crate::domain::audience::ResourceServer;
use crate::domain::audit::{Action, Requester};
use crate::domain::rotation::{Overlap, SecretDigests};

#[derive(Queryable, Selectable)]
#[diesel(table_name = resource_servers)]
struct ResourceServerRow {
    id: i64,
    client_id: String,
    name: String,
    created_at: NaiveDateTime,
    site_limited: bool,
    previous_secret_valid_until: Option<NaiveDateTime>,
}

/// What introspection needs to know about a resource server.
#[derive(Debug)]
pub struct ResourceServerAccess {
    pub id: i64,
    pub secrets: SecretDigests,
    /// The ids of the sites whose tokens it may introspect; `None`: every site.
    pub site_ids: Option<Vec<i64>>,
}

/// The outcome of an operator's change to a resource server; nothing was changed unless `Done`.
#[derive(Debug)]
pub enum ResourceServerChange {
    Done(ResourceServer),
    UnknownResourceServer,
    /// This site key names no site.
    UnknownSite(String),
    /// Sites cannot be taken from a resource server that sees every site.
    NotSiteLimited,
}

impl Store {
    /// Creates a resource server, limited to the sites `site_keys` names when given.
    pub fn insert_resource_server(
        &self,
        client_id: &str,
        name: &str,
        secret_digest: &[u8],
        site_keys: Option<&[String]>,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<ResourceServerChange, StoreError> {
        write_transaction!(self, |conn, changed| {
            changed.tag(ChangeTag::resource_server(client_id));
            let site_ids = match site_keys.map(|keys| conn.site_ids(keys)).transpose()? {
                Some(Err(unknown)) => return Ok(ResourceServerChange::UnknownSite(unknown)),
                Some(Ok(ids)) => Some(ids),
                None => None,
            };
            let row = diesel::insert_into(resource_servers::table)
                .values((
                    resource_servers::client_id.eq(client_id),
                    resource_servers::name.eq(name),
                    resource_servers::secret_digest.eq(secret_digest),
                    resource_servers::created_at.eq(now),
                    resource_servers::site_limited.eq(site_ids.is_some()),
                ))
                .returning(ResourceServerRow::as_returning())
                .get_result(conn)?;
            for site_id in site_ids.unwrap_or_default() {
                diesel::insert_into(resource_server_sites::table)
                    .values((
                        resource_server_sites::resource_server_id.eq(row.id),
                        resource_server_sites::site_id.eq(site_id),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            }
            let created = conn.with_site_keys(row)?;
            let event = by
                .event(now, Action::ResourceServerCreated, client_id)
                .with_detail(format!("name {name}, sites {}", created.sites_text()));
            insert_audit!(conn, &event)?;
            Ok(ResourceServerChange::Done(created))
        })
    }

    pub fn list_resource_servers(&self) -> Result<Vec<ResourceServer>, StoreError> {
        with_connection!(self, |conn| {
            let rows = resource_servers::table
                .order(resource_servers::id)
                .select(ResourceServerRow::as_select())
                .load(conn)?;
            rows.into_iter()
                .map(|row| conn.with_site_keys(row))
                .collect()
        })
    }

    /// One resource server, if it exists.
    pub fn resource_server(&self, client_id: &str) -> Result<Option<ResourceServer>, StoreError> {
        with_connection!(self, |conn| {
            conn.resource_server_row(client_id)?
                .map(|row| conn.with_site_keys(row))
                .transpose()
        })
    }

    /// The stored secret digest and site limit of a resource server, if it exists.
    pub fn resource_server_access(
        &self,
        client_id: &str,
    ) -> Result<Option<ResourceServerAccess>, StoreError> {
        with_connection!(self, |conn| {
            let found = resource_servers::table
                .filter(resource_servers::client_id.eq(client_id))
                .select((
                    resource_servers::id,
                    resource_servers::site_limited,
                    resource_servers::secret_digest,
                    resource_servers::previous_secret_digest,
                    resource_servers::previous_secret_valid_until,
                ))
                .get_result::<(i64, bool, Vec<u8>, Option<Vec<u8>>, Option<NaiveDateTime>)>(conn)
                .optional()?;
            let Some((id, site_limited, current, previous, previous_valid_until)) = found else {
                return Ok(None);
            };
            // A second read, only for limited resource servers. `site_limited` never goes back
            // to false, so the sites read second belong to a state that existed; a change in
            // between has also invalidated the answer cached from this read.
            let site_ids = if site_limited {
                Some(
                    resource_server_sites::table
                        .filter(resource_server_sites::resource_server_id.eq(id))
                        .select(resource_server_sites::site_id)
                        .load::<i64>(conn)?,
                )
            } else {
                None
            };
            Ok(Some(ResourceServerAccess {
                id,
                secrets: SecretDigests::new(current, previous, previous_valid_until),
                site_ids,
            }))
        })
    }

    /// Limits a resource server to more sites (`assign = true`; one that saw every site then sees
    /// only these), or takes sites from its limit; all or nothing. A limited resource server
    /// stays limited when its last site is taken: it then sees no site's tokens.
    pub fn change_resource_server_sites(
        &self,
        client_id: &str,
        site_keys: &[String],
        assign: bool,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<ResourceServerChange, StoreError> {
        let action = if assign {
            Action::ResourceServerSitesAssigned
        } else {
            Action::ResourceServerSitesUnassigned
        };
        write_transaction!(self, |conn, changed| {
            changed.tag(ChangeTag::resource_server(client_id));
            let Some(row) = conn.resource_server_row(client_id)? else {
                return Ok(ResourceServerChange::UnknownResourceServer);
            };
            let site_ids = match conn.site_ids(site_keys)? {
                Ok(ids) => ids,
                Err(unknown) => return Ok(ResourceServerChange::UnknownSite(unknown)),
            };
            if !assign && !row.site_limited {
                return Ok(ResourceServerChange::NotSiteLimited);
            }
            let this_server = resource_servers::table.filter(resource_servers::id.eq(row.id));
            let row = diesel::update(this_server)
                .set(resource_servers::site_limited.eq(true))
                .returning(ResourceServerRow::as_returning())
                .get_result(conn)?;
            for site_id in site_ids {
                let limit = (
                    resource_server_sites::resource_server_id.eq(row.id),
                    resource_server_sites::site_id.eq(site_id),
                );
                if assign {
                    diesel::insert_into(resource_server_sites::table)
                        .values(limit)
                        .on_conflict_do_nothing()
                        .execute(conn)?;
                } else {
                    diesel::delete(resource_server_sites::table.filter(limit.0).filter(limit.1))
                        .execute(conn)?;
                }
            }
            let changed = conn.with_site_keys(row)?;
            let event = by
                .event(now, action, client_id)
                .with_detail(format!("sites {}", site_keys.join(", ")));
            insert_audit!(conn, &event)?;
            Ok(ResourceServerChange::Done(changed))
        })
    }

    /// Gives a resource server a new secret digest (see [`secret_rotation!`]) and records the
    /// rotation with the overlap (never a secret). `None` when no resource server has this id.
    pub fn rotate_resource_server_secret(
        &self,
        client_id: &str,
        secret_digest: &[u8],
        overlap: Overlap,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<Option<ResourceServer>, StoreError> {
        let previous_valid_until = overlap.previous_valid_until(now);
        write_transaction!(self, |conn, changed| {
            changed.tag(ChangeTag::resource_server(client_id));
            let this_server =
                resource_servers::table.filter(resource_servers::client_id.eq(client_id));
            let Some(row) = diesel::update(this_server)
                .set(secret_rotation!(
                    resource_servers::secret_digest,
                    resource_servers::previous_secret_digest,
                    resource_servers::previous_secret_valid_until,
                    secret_digest,
                    previous_valid_until
                ))
                .returning(ResourceServerRow::as_returning())
                .get_result(conn)
                .optional()?
            else {
                return Ok(None);
            };
            let event = by
                .event(now, Action::ResourceServerSecretRotated, client_id)
                .with_detail(format!("overlap {} s", overlap.secs()));
            insert_audit!(conn, &event)?;
            Ok(Some(conn.with_site_keys(row)?))
        })
    }

    /// Deletes a resource server; its credentials stop working on every node at once, and it
    /// leaves every token's audience (`token_audiences` cascades). A token whose audience it was
    /// the last of keeps `audience_restricted`: no resource server may see it any more.
    pub fn delete_resource_server(
        &self,
        client_id: &str,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, |conn, changed| {
            changed.tag(ChangeTag::resource_server(client_id));
            let deleted = diesel::delete(
                resource_servers::table.filter(resource_servers::client_id.eq(client_id)),
            )
            .execute(conn)?;
            if deleted == 1 {
                insert_audit!(
                    conn,
                    &by.event(now, Action::ResourceServerDeleted, client_id)
                )?;
            }
            Ok(deleted == 1)
        })
    }
}

/// Lookups that run inside the transactions above, written once and compiled per backend.
trait ResourceServerLookups {
    fn resource_server_row(
        &mut self,
        client_id: &str,
    ) -> Result<Option<ResourceServerRow>, StoreError>;
    fn with_site_keys(&mut self, row: ResourceServerRow) -> Result<ResourceServer, StoreError>;
}

macro_rules! impl_resource_server_lookups {
    ($connection:ty) => {
        impl ResourceServerLookups for $connection {
            fn resource_server_row(
                &mut self,
                client_id: &str,
            ) -> Result<Option<ResourceServerRow>, StoreError> {
                Ok(resource_servers::table
                    .filter(resource_servers::client_id.eq(client_id))
                    .select(ResourceServerRow::as_select())
                    .get_result(self)
                    .optional()?)
            }

            fn with_site_keys(
                &mut self,
                row: ResourceServerRow,
            ) -> Result<ResourceServer, StoreError> {
                let site_keys = if row.site_limited {
                    let mut keys = resource_server_sites::table
                        .inner_join(sites::table)
                        .filter(resource_server_sites::resource_server_id.eq(row.id))
                        .select(sites::site_key)
                        .load::<String>(self)?;
                    // Sorted here, not by SQL: PostgreSQL would order by the database's collation.
                    keys.sort_unstable();
                    Some(keys)
                } else {
                    None
                };
                Ok(ResourceServer {
                    client_id: row.client_id,
                    name: row.name,
                    created_at: row.created_at,
                    site_keys,
                    previous_secret_valid_until: row.previous_secret_valid_until,
                })
            }
        }
    };
}

impl_resource_server_lookups!(diesel::sqlite::SqliteConnection);
impl_resource_server_lookups!(diesel::pg::PgConnection);
