//! The operator's backups and restores (`tokenwarden backup`, `tokenwarden restore`).
//!
//! A backup is a consistent copy of an SQLite database taken while the servers run, written
//! beside its destination and renamed into place, so the destination is either absent or whole.
//! A restore brings back a database as it was, and with it every token that was active then,
//! including tokens invalidated since: so, unless told otherwise, it ends every token and admin
//! session of the restored data (recorded in each token's history and in the audit trail), and
//! integrators get new primary tokens at their next request. The keyed digests and sealed values
//! in a copy are only usable with the server secret, which is kept apart from it.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use super::{Context, ServiceError};
use crate::domain::audit::Requester;
use crate::domain::history::Actor;
use crate::store::{settle_sqlite_file, DatabaseUrl, EndedSessions, PoolSettings, Store};

/// A backup just written.
#[derive(Debug)]
pub struct Backup {
    pub file: PathBuf,
    pub bytes: u64,
    pub taken_at: NaiveDateTime,
}

/// Writes a consistent copy of the SQLite database to `to`. An existing `to` is refused unless
/// `replace`; it is replaced only once the new copy is complete.
pub fn backup(
    context: &Context,
    by: &Requester,
    to: &Path,
    replace: bool,
    now: NaiveDateTime,
) -> Result<Backup, ServiceError> {
    if to.exists() && !replace {
        return Err(ServiceError::BackupExists(to.to_path_buf()));
    }
    let partial = beside(to, "backup")?;
    remove_if_present(&partial)?;
    if let Err(error) = context.store.backup_sqlite(&partial, by, now) {
        let _ = std::fs::remove_file(&partial);
        return Err(error.into());
    }
    File::open(&partial)
        .and_then(|file| file.sync_all())
        .and_then(|()| std::fs::rename(&partial, to))
        .and_then(|()| sync_directory_of(to))
        .map_err(|error| ServiceError::BackupFile(to.to_path_buf(), error))?;
    let bytes = std::fs::metadata(to)
        .map_err(|error| ServiceError::BackupFile(to.to_path_buf(), error))?
        .len();
    log::info!("wrote a backup to {} ({bytes} bytes)", to.display());
    Ok(Backup {
        file: to.to_path_buf(),
        bytes,
        taken_at: now,
    })
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// When the backup restored was taken, when it says (a copy made by `backup`).
    pub taken_at: Option<NaiveDateTime>,
    /// What was ended; `None` when asked to keep tokens and sessions.
    pub ended: Option<EndedSessions>,
}

/// Restores `database`. With `from` (SQLite only), the database file is replaced by a copy of that
/// backup; without, `database` is taken as already restored by other means (a PostgreSQL dump, a
/// file copied back). Either way, unless `keep_sessions`, every token and admin session of the
/// restored data is ended. Every server on `database` must be stopped first.
pub fn restore(
    database: &DatabaseUrl,
    settings: &PoolSettings,
    from: Option<&Path>,
    keep_sessions: bool,
    by: &Requester,
    now: NaiveDateTime,
) -> Result<Restored, ServiceError> {
    let Some(from) = from else {
        return end_sessions(&Store::open(database, settings)?, keep_sessions, by, now);
    };
    let DatabaseUrl::Sqlite(target) = database else {
        return Err(crate::store::StoreError::NotSqlite.into());
    };
    if !from.is_file() {
        return Err(ServiceError::BackupFile(
            from.to_path_buf(),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let staged = beside(target, "restore")?;
    remove_if_present(&staged)?;
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ServiceError::BackupFile(path, error)
    };
    std::fs::copy(from, &staged).map_err(file_error(from))?;
    let restored = (|| {
        // Opening it applies the migrations a backup of an older release lacks.
        let store = Store::open(&DatabaseUrl::Sqlite(staged.clone()), settings)?;
        let restored = end_sessions(&store, keep_sessions, by, now)?;
        drop(store);
        settle_sqlite_file(&staged, settings.busy_timeout)?;
        Ok::<_, ServiceError>(restored)
    })();
    let restored = match restored {
        Ok(restored) => restored,
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            return Err(error);
        }
    };
    for suffix in ["-wal", "-shm"] {
        remove_if_present(&PathBuf::from(format!("{}{suffix}", target.display())))?;
    }
    std::fs::rename(&staged, target)
        .and_then(|()| sync_directory_of(target))
        .map_err(file_error(target))?;
    log::info!("restored {} from {}", target.display(), from.display());
    Ok(restored)
}

fn end_sessions(
    store: &Store,
    keep_sessions: bool,
    by: &Requester,
    now: NaiveDateTime,
) -> Result<Restored, ServiceError> {
    let taken_at = store.last_backup_taken_at()?;
    if keep_sessions {
        return Ok(Restored {
            taken_at,
            ended: None,
        });
    }
    let detail = match taken_at {
        Some(at) => format!(
            "restored from a backup taken at {}",
            at.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "restored".to_string(),
    };
    let actor = Actor::Operator {
        name: by
            .actor
            .id
            .clone()
            .unwrap_or_else(|| "operator".to_string()),
    };
    let ended = store.end_restored_sessions(&actor, by, &detail, now)?;
    log::info!(
        "ended {} tokens and {} admin tokens of the restored data",
        ended.tokens,
        ended.admin_tokens
    );
    Ok(Restored {
        taken_at,
        ended: Some(ended),
    })
}

/// A temporary file in the directory of `path` (so a rename into place stays on one file system).
fn beside(path: &Path, purpose: &str) -> Result<PathBuf, ServiceError> {
    let name = path
        .file_name()
        .ok_or_else(|| {
            ServiceError::BackupFile(
                path.to_path_buf(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            )
        })?
        .to_string_lossy();
    Ok(path.with_file_name(format!(
        ".{name}.tokenwarden-{purpose}-{}",
        std::process::id()
    )))
}

fn remove_if_present(path: &Path) -> Result<(), ServiceError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(ServiceError::BackupFile(path.to_path_buf(), error))
        }
        _ => Ok(()),
    }
}

/// Makes a rename in the directory of `path` durable.
fn sync_directory_of(path: &Path) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)?.sync_all()
}
