//! Operator use cases for resource servers (`tokenwarden resource-server …`).

use chrono::NaiveDateTime;

use super::{Context, ServiceError};
use crate::crypto;
use crate::domain::audit::Requester;
use crate::domain::secret::Secret;
use crate::domain::site::validate_name;
use crate::domain::token::{self, SecretKind};
use crate::store::ResourceServer;

/// Prefix of resource-server client ids (public, like site keys).
pub const CLIENT_ID_PREFIX: &str = "rs_";

/// Creates a resource server; the secret exists in clear only in the return value.
pub fn create(
    context: &Context,
    by: &Requester,
    name: &str,
    now: NaiveDateTime,
) -> Result<(ResourceServer, Secret), ServiceError> {
    let name = validate_name(name)?;
    let random: [u8; 15] = crypto::random_bytes()?;
    let client_id = format!(
        "{CLIENT_ID_PREFIX}{}",
        crate::domain::site::encode_identifier(&random)
    );
    let secret = token::mint(SecretKind::ResourceServerSecret, &crypto::random_bytes()?);
    let digest = context.keys.client_secret_digest(secret.expose());
    let created = context
        .store
        .insert_resource_server(&client_id, &name, &digest, by, now)?;
    log::info!(
        "created resource server {} ({})",
        created.client_id,
        created.name
    );
    Ok((created, secret))
}

pub fn list(context: &Context) -> Result<Vec<ResourceServer>, ServiceError> {
    Ok(context.store.list_resource_servers()?)
}

pub fn delete(
    context: &Context,
    by: &Requester,
    client_id: &str,
    now: NaiveDateTime,
) -> Result<(), ServiceError> {
    if !context.store.delete_resource_server(client_id, by, now)? {
        return Err(ServiceError::UnknownResourceServer(client_id.to_string()));
    }
    log::info!("deleted resource server {client_id}");
    Ok(())
}
