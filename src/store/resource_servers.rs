//! Queries on `resource_servers`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::audit::insert_audit;
use super::schema::resource_servers;
use super::{with_connection, write_transaction, Store, StoreError};
use crate::domain::audit::{Action, Requester};

/// A resource server as listed to the operator (no secret).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resource_servers)]
pub struct ResourceServer {
    pub client_id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
}

impl Store {
    pub fn insert_resource_server(
        &self,
        client_id: &str,
        name: &str,
        secret_digest: &[u8],
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<ResourceServer, StoreError> {
        write_transaction!(self, |conn| {
            let event = by
                .event(now, Action::ResourceServerCreated, client_id)
                .with_detail(format!("name {name}"));
            insert_audit!(conn, &event)?;
            Ok(diesel::insert_into(resource_servers::table)
                .values((
                    resource_servers::client_id.eq(client_id),
                    resource_servers::name.eq(name),
                    resource_servers::secret_digest.eq(secret_digest),
                    resource_servers::created_at.eq(now),
                ))
                .returning(ResourceServer::as_returning())
                .get_result(conn)?)
        })
    }

    pub fn list_resource_servers(&self) -> Result<Vec<ResourceServer>, StoreError> {
        with_connection!(self, |conn| {
            Ok(resource_servers::table
                .order(resource_servers::id)
                .select(ResourceServer::as_select())
                .load(conn)?)
        })
    }

    /// The stored secret digest of a resource server, if it exists.
    pub fn resource_server_secret_digest(
        &self,
        client_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        with_connection!(self, |conn| {
            Ok(resource_servers::table
                .filter(resource_servers::client_id.eq(client_id))
                .select(resource_servers::secret_digest)
                .get_result(conn)
                .optional()?)
        })
    }

    /// Deletes a resource server; its credentials stop working on every node at once.
    pub fn delete_resource_server(
        &self,
        client_id: &str,
        by: &Requester,
        now: NaiveDateTime,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, |conn| {
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
