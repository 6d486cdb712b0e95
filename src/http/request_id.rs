//! `X-Request-Id`: every request's id. A request's own is kept when it is sane: one header of 1 to
//! 128 visible ASCII characters (0x21 to 0x7E) that is not a tokenwarden secret sent there by
//! mistake. Otherwise one is made: 32 hex digits, unique per process and thread (`generate`).
//!
//! `observe` gives each request its id before any handler runs and adds it to the response, so
//! every answer of the route table carries it (errors, 404, 405, 413, `/metrics`, the admin page).
//! Answers actix gives before a request reaches the route table (400 for a malformed request head,
//! 408 for a head that does not arrive in time, 431) have no request to take an id from, and carry
//! none. The request's access-log line shows the id. While the request is handled, on its worker
//! and in [`block`] (which handlers use instead of `web::block`), the id is the thread's request id
//! in `logging`, so every line logged meanwhile carries it in the JSON format.

use std::future::{poll_fn, Future};
use std::pin::pin;

use actix_web::error::BlockingError;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::crypto;
use crate::domain::token;
use crate::logging;

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id a request may bring.
const MAX_LEN: usize = 128;
const _: () = assert!(MAX_LEN <= logging::REQUEST_ID_CAPACITY);

/// One request's id: the header value to answer with, and the same text for the log.
pub(crate) struct RequestId {
    header: HeaderValue,
    logged: logging::RequestId,
}

impl RequestId {
    /// The request's own id if it brought one sane `X-Request-Id`, else a new one.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut given = headers.get_all(&X_REQUEST_ID);
        match (given.next(), given.next()) {
            (Some(value), None) => Self::accept(value).unwrap_or_else(Self::generate),
            _ => Self::generate(),
        }
    }

    fn accept(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let sane = (1..=MAX_LEN).contains(&bytes.len())
            && bytes.iter().all(|byte| (0x21..=0x7e).contains(byte));
        let text = std::str::from_utf8(bytes).ok().filter(|_| sane)?;
        if token::recognise(text).is_ok() {
            return None;
        }
        Some(Self {
            header: value.clone(),
            logged: logging::RequestId::new(text)?,
        })
    }

    /// 32 hex digits: eight random bytes drawn once per thread, then a count of the ids that
    /// thread made. Distinct within a process and across processes (the random half), and no
    /// system call per request: request ids are labels, not secrets. Should the system's
    /// randomness ever fail, a thread's half is the count of threads that asked before.
    fn generate() -> Self {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicU64, Ordering};
        static THREADS: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static NEXT: Cell<(u64, u64)> = Cell::new((
                crypto::random_bytes()
                    .map(u64::from_ne_bytes)
                    .unwrap_or_else(|_| THREADS.fetch_add(1, Ordering::Relaxed)),
                0,
            ));
        }
        let (thread, count) = NEXT.with(|next| {
            let (thread, count) = next.get();
            next.set((thread, count.wrapping_add(1)));
            (thread, count)
        });
        let bytes = (u128::from(thread) << 64 | u128::from(count)).to_be_bytes();
        let mut hex = [0u8; 32];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        // Hex digits: always a header value and within the capacity.
        let text = std::str::from_utf8(&hex).unwrap_or_default();
        Self {
            header: HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("")),
            logged: logging::RequestId::new(text).unwrap_or_default(),
        }
    }

    /// The value of the response's `X-Request-Id`, moved out (no copy of its bytes).
    pub(crate) fn into_header(self) -> HeaderValue {
        self.header
    }

    /// The id as the log carries it.
    pub(crate) fn logged(&self) -> logging::RequestId {
        self.logged
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `future`, with `id` as the request id of whichever thread polls it.
pub(crate) async fn carried<F: Future>(id: logging::RequestId, future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|context| logging::with_request_id(Some(id), || future.as_mut().poll(context))).await
}

/// `web::block` with the calling thread's request id carried to the blocking thread, so what the
/// service logs there carries it too.
#[allow(clippy::disallowed_methods)]
pub(crate) fn block<F, R>(work: F) -> impl Future<Output = Result<R, BlockingError>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let id = logging::request_id();
    actix_web::web::block(move || logging::with_request_id(id, work))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn id_for(values: &[&[u8]]) -> String {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        }
        let id = RequestId::of(&headers);
        let logged = id.logged();
        assert_eq!(id.into_header().as_bytes(), logged.as_str().as_bytes());
        logged.as_str().to_string()
    }

    fn is_generated(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|byte| HEX_DIGITS.contains(&byte))
    }

    #[test]
    fn sane_ids_are_kept() {
        let longest = "~".repeat(MAX_LEN);
        for kept in ["a", "!", "req-42", "0f1e/2d3c:4b5a", longest.as_str()] {
            assert_eq!(id_for(&[kept.as_bytes()]), kept);
        }
    }

    #[test]
    fn other_ids_are_replaced() {
        let too_long = "a".repeat(MAX_LEN + 1);
        let token = token::mint(token::SecretKind::PrimaryToken, &[7; token::RANDOM_BYTES]);
        for replaced in [
            &b""[..],
            b"two words",
            b"tab\there",
            b"caf\xc3\xa9",
            b"\x80",
            too_long.as_bytes(),
            token.expose().as_bytes(),
        ] {
            let id = id_for(&[replaced]);
            assert!(is_generated(&id), "{replaced:?} gave {id}");
        }
        let twice = id_for(&[b"first", b"second"]);
        assert!(is_generated(&twice), "{twice}");
        assert!(is_generated(&id_for(&[])));
        assert_ne!(id_for(&[]), id_for(&[]), "random");
    }
}
