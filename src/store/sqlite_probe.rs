//! The SQLite change feed's own connection: `PRAGMA data_version`, and a look at the WAL-index
//! header that tells when the pragma need not run.
//!
//! `PRAGMA data_version` is exact but costs a read transaction: two `fcntl` calls on the `-shm`
//! file and a statement step, on every introspection (docs/performance.md, item 13). Every commit,
//! by any connection of any process, rewrites the WAL-index header in shared memory before it
//! returns to its caller (`walIndexWriteHdr` in SQLite's `wal.c`: the change counter `iChange`
//! and the last frame `mxFrame` move on every commit). So while the header's bytes are those seen
//! before the last pragma, no commit has completed since, and the pragma would answer the same.
//! Any other reading, including one torn by a commit in progress, sends the caller back to the
//! pragma, which stays the source of truth. The header is compared, never interpreted (but for
//! its `isInit` flag).
//!
//! What is relied on is the layout in SQLite's "WAL-mode File Format" document: the WAL index
//! begins with two copies of a 48-byte header, which writers fill second copy first with a memory
//! barrier between. It has not changed since WAL was introduced (3.7.0, 2010), and the SQLite in
//! use is the one compiled into this binary (`libsqlite3-sys`, `bundled`).
//!
//! The header is read through SQLite's own mapping of the index, obtained from the connection's
//! VFS (`xShmMap`), never by opening the `-shm` file: closing any descriptor of a file drops every
//! POSIX lock the process holds on it, SQLite's included, and another process would then reset
//! the index under us. Hence a raw connection rather than diesel's, which hides its handle. The
//! mapping is asked for only when the connection reads in WAL mode (otherwise the VFS would create
//! an index the pager never releases); a database in another mode runs the pragma every time. The
//! words are read with atomic loads: other connections write them meanwhile.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use libsqlite3_sys as ffi;

/// Size of one copy of the header (`WalIndexHdr`), in 32-bit words: 48 bytes.
const HEADER_WORDS: usize = 12;
/// Size of a WAL-index region, as SQLite maps it (`WALINDEX_PGSZ`).
const REGION_BYTES: c_int = 32 * 1024;

/// The header words of one reading.
pub(crate) type Header = [u32; HEADER_WORDS];

/// An open connection with its `PRAGMA data_version` prepared. It has no busy timeout, unlike the
/// pool's: the check runs on the HTTP worker, which must never wait; a pragma refused as busy
/// fails that request with 503 and the connection is opened again for the next.
pub(crate) struct ProbeConnection {
    db: *mut ffi::sqlite3,
    data_version: *mut ffi::sqlite3_stmt,
    /// SQLite's mapping of the first WAL-index region, valid while `db` is open; null when the
    /// database is not in WAL mode.
    wal_index: *const AtomicU32,
    /// How often the pragma ran, for tests of when it need not.
    #[cfg(test)]
    pub(crate) pragmas_run: u64,
}

// SAFETY: SQLite is built thread-safe (`SQLITE_THREADSAFE=1`), so a connection may move between
// threads; the change feed uses it under a mutex, one thread at a time.
unsafe impl Send for ProbeConnection {}

impl ProbeConnection {
    /// Opens the database at `path` (which must exist), prepares the pragma and, when the
    /// database is in WAL mode, finds the WAL index.
    pub(crate) fn open(path: &str) -> Result<Self, String> {
        let path = CString::new(path).map_err(|_| "the database path contains a NUL byte")?;
        let mut db = ptr::null_mut();
        // SAFETY: a valid C string and out-pointer; on failure SQLite still returns a handle
        // (or none) that `close` accepts, which `Drop` does below.
        let opened = unsafe {
            ffi::sqlite3_open_v2(
                path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_EXRESCODE,
                ptr::null(),
            )
        };
        let mut connection = Self {
            db,
            data_version: ptr::null_mut(),
            wal_index: ptr::null(),
            #[cfg(test)]
            pragmas_run: 0,
        };
        if opened != ffi::SQLITE_OK {
            return Err(connection.error("cannot open the database"));
        }
        connection.data_version = connection.prepare(c"PRAGMA data_version")?;
        // A first read attaches the connection to the WAL index, if there is one. Only a
        // connection in WAL mode may ask for its mapping: on any other, the VFS would create and
        // attach a `-shm` file the pager knows nothing of, and never release it.
        connection.data_version()?;
        if connection.in_wal_mode()? {
            connection.wal_index = connection.map_wal_index();
        }
        Ok(connection)
    }

    /// Runs `PRAGMA data_version`.
    pub(crate) fn data_version(&mut self) -> Result<i64, String> {
        // SAFETY: the statement belongs to this open connection, which only this thread uses;
        // the column is read only while the statement is on its row.
        let version = unsafe {
            let stepped = ffi::sqlite3_step(self.data_version);
            let version = (stepped == ffi::SQLITE_ROW)
                .then(|| ffi::sqlite3_column_int64(self.data_version, 0));
            ffi::sqlite3_reset(self.data_version);
            version
        };
        let version = version.ok_or_else(|| self.error("PRAGMA data_version failed"))?;
        #[cfg(test)]
        {
            self.pragmas_run += 1;
        }
        Ok(version)
    }

    /// The header, when both copies agree and it has been written; `None` while a commit is
    /// writing it, or when the database is not in WAL mode: callers then treat it as "may have
    /// changed".
    pub(crate) fn header(&self) -> Option<Header> {
        if self.wal_index.is_null() {
            return None;
        }
        // Other connections, in this process and others, write these words while they are read;
        // atomic loads keep that defined. The writer fills the second copy, then the first, with
        // a barrier between; reading the first and then, after an acquire fence, the second sees
        // them equal only when both are whole.
        let read = |copy: usize| -> Header {
            std::array::from_fn(|word| {
                // SAFETY: SQLite's mapping of the region (32 KiB) holds both copies and stays
                // mapped while the connection is open; `u32` words are 4-byte aligned in it.
                unsafe { &*self.wal_index.add(copy * HEADER_WORDS + word) }.load(Ordering::Relaxed)
            })
        };
        let first = read(0);
        fence(Ordering::Acquire);
        let second = read(1);
        // `isInit`, byte 12 of the header (the first byte of word 3), is set by every write.
        (first == second && first[3].to_ne_bytes()[0] != 0).then_some(first)
    }

    /// Whether the connection reads the database in WAL mode (`PRAGMA journal_mode`).
    fn in_wal_mode(&mut self) -> Result<bool, String> {
        let statement = self.prepare(c"PRAGMA journal_mode")?;
        // SAFETY: a statement of this open connection, finalized before returning; the text is
        // copied out before the statement is reset.
        let mode = unsafe {
            let mode = (ffi::sqlite3_step(statement) == ffi::SQLITE_ROW)
                .then(|| ffi::sqlite3_column_text(statement, 0))
                .filter(|text| !text.is_null())
                .map(|text| {
                    CStr::from_ptr(text.cast())
                        .to_bytes()
                        .eq_ignore_ascii_case(b"wal")
                });
            ffi::sqlite3_finalize(statement);
            mode
        };
        mode.ok_or_else(|| self.error("PRAGMA journal_mode failed"))
    }

    fn prepare(&self, sql: &CStr) -> Result<*mut ffi::sqlite3_stmt, String> {
        let mut statement = ptr::null_mut();
        // SAFETY: an open handle, a NUL-terminated statement and a valid out-pointer.
        let prepared = unsafe {
            ffi::sqlite3_prepare_v2(self.db, sql.as_ptr(), -1, &mut statement, ptr::null_mut())
        };
        if prepared != ffi::SQLITE_OK {
            return Err(self.error("cannot prepare a pragma"));
        }
        Ok(statement)
    }

    /// SQLite's own mapping of WAL-index region 0, or null when there is none (a VFS without
    /// shared memory).
    fn map_wal_index(&self) -> *const AtomicU32 {
        let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
        let mut region: *mut c_void = ptr::null_mut();
        // SAFETY: `SQLITE_FCNTL_FILE_POINTER` writes the main database's `sqlite3_file` pointer,
        // valid while the connection is open. `xShmMap` exists from io methods version 2 on (the
        // version is checked before the field is read); with `bExtend` 0 it only reports the
        // region this connection's first read transaction mapped, and leaves `region` null when
        // there is none.
        unsafe {
            let found = ffi::sqlite3_file_control(
                self.db,
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                ptr::from_mut(&mut file).cast(),
            );
            if found != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
                return ptr::null();
            }
            let methods = &*(*file).pMethods;
            if methods.iVersion < 2 {
                return ptr::null();
            }
            let Some(shm_map) = methods.xShmMap else {
                return ptr::null();
            };
            if shm_map(file, 0, REGION_BYTES, 0, &mut region) != ffi::SQLITE_OK {
                return ptr::null();
            }
        }
        region.cast_const().cast()
    }

    /// `context` and SQLite's message for the last failure on this connection.
    fn error(&self, context: &str) -> String {
        if self.db.is_null() {
            return format!("{context}: out of memory");
        }
        // SAFETY: an open (or failed-to-open) handle; SQLite owns the returned message.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) };
        format!("{context}: {}", message.to_string_lossy())
    }
}

impl Drop for ProbeConnection {
    fn drop(&mut self) {
        // SAFETY: both are this connection's own and used nowhere else; finalizing a null
        // statement and closing a null handle are no-ops. The WAL-index mapping is not used
        // after this.
        unsafe {
            ffi::sqlite3_finalize(self.data_version);
            ffi::sqlite3_close(self.db);
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};

    use super::*;

    fn wal_database(dir: &std::path::Path, name: &str) -> (String, SqliteConnection) {
        let path = dir.join(name).to_string_lossy().into_owned();
        let mut connection = SqliteConnection::establish(&path).unwrap();
        connection
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER)")
            .unwrap();
        (path, connection)
    }

    #[test]
    fn every_commit_changes_the_header_and_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = wal_database(dir.path(), "index.db");
        let mut probe = ProbeConnection::open(&path).unwrap();
        let mut seen = probe.header().expect("an initialised header");
        for n in 0..200 {
            writer
                .batch_execute(&format!("INSERT INTO t VALUES ({n})"))
                .unwrap();
            let now = probe.header().expect("a settled header after the commit");
            assert_ne!(now, seen, "commit {n} left the header as it was");
            seen = now;
            writer.batch_execute("SELECT * FROM t").unwrap();
            probe.data_version().unwrap();
            assert_eq!(probe.header(), Some(seen), "a read changed the header");
        }
        // A checkpoint that empties the WAL, and the restart of the WAL by the next commit.
        writer
            .batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        writer.batch_execute("INSERT INTO t VALUES (-1)").unwrap();
        assert_ne!(probe.header(), Some(seen), "the commit after a checkpoint");
    }

    #[test]
    fn a_database_not_in_wal_mode_has_no_header_but_a_data_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("rollback.db")
            .to_string_lossy()
            .into_owned();
        let mut writer = SqliteConnection::establish(&path).unwrap();
        writer.batch_execute("CREATE TABLE t (n INTEGER)").unwrap();
        let mut probe = ProbeConnection::open(&path).unwrap();
        let before = probe.data_version().unwrap();
        assert_eq!(probe.header(), None);
        writer.batch_execute("INSERT INTO t VALUES (1)").unwrap();
        assert_ne!(probe.data_version().unwrap(), before);
        drop(probe);
        assert!(
            !dir.path().join("rollback.db-shm").exists(),
            "the probe created a WAL index the database does not use"
        );
    }

    #[test]
    fn a_missing_database_is_refused_with_sqlites_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db").to_string_lossy().into_owned();
        let refusal = ProbeConnection::open(&path).err().expect("no such file");
        assert!(
            refusal.starts_with("cannot open the database: "),
            "{refusal}"
        );
        assert!(!dir.path().join("absent.db").exists(), "created nothing");
    }
}
