//! Reads about one admin session: the admin token a request presents and when it stops working
//! (`GET /admin/v1/sessions/current`). Admin tokens are issued, checked and revoked in `admins.rs`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::admin_tokens;
use super::{with_connection, Store, StoreError};

impl Store {
    /// When `admin_id`'s admin token with this digest stops working; `None` when the admin holds
    /// no such token that still works at `now` (unknown, revoked or expired).
    pub fn admin_token_expiry(
        &self,
        admin_id: i64,
        value_digest: &[u8],
        now: NaiveDateTime,
    ) -> Result<Option<NaiveDateTime>, StoreError> {
        with_connection!(self, |conn| {
            Ok(admin_tokens::table
                .filter(admin_tokens::admin_id.eq(admin_id))
                .filter(admin_tokens::value_digest.eq(value_digest))
                .filter(admin_tokens::expires_at.gt(now))
                .select(admin_tokens::expires_at)
                .get_result(conn)
                .optional()?)
        })
    }
}
