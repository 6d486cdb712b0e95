//! The audit trail: what is recorded beside each change, what the server notes on its own
//! (failed client authentications, throttle locks, alarms), listing and retention.
//!
//! Changes record their event in their own transaction (`store`'s `insert_audit!`). What happens on
//! the request path without changing anything is noted in memory ([`AuditTrail`]) and written by
//! the background runner (`background`), so a flood of failures costs no database write per
//! request: failed authentications are aggregated per (client id, address) per window, one row
//! each with a count and the first and last time; at most [`MAX_FAILURE_ROWS_PER_WINDOW`] rows per
//! window, the rest counted in one overflow row. A client id is kept only when it names an existing
//! client; otherwise the row says `(unknown)`, since it may be a secret sent in the wrong field.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use chrono::{NaiveDateTime, TimeDelta};

use super::{Context, ServiceError};
use crate::domain::admin::{Admin, AdminRefusal};
use crate::domain::audit::{
    looks_like_client_id, Action, ActorKind, AuditActor, AuditEvent, AuditQuery, Outcome,
};
use crate::domain::throttle::address_key;
use crate::store::StoreError;

/// Rows of failed authentications one window may hold; the rest go into one overflow row.
pub const MAX_FAILURE_ROWS_PER_WINDOW: usize = 1_000;
/// Client ids one address (IPv6: its /64) may add rows for in one window; its failures under
/// further client ids are counted in its `(unknown)` row, so no address can fill the window's
/// rows with random client ids and push the real target into the overflow.
pub const MAX_CLIENT_IDS_PER_ADDRESS: u32 = 10;
/// Locks and alarms one window may record one by one; the rest are counted in one row.
pub const MAX_NOTED_PER_WINDOW: usize = 1_000;
/// Events noted on the request path waiting for the runner while the database does not take
/// them; beyond, they are counted in the log rather than kept.
const MAX_PENDING_EVENTS: usize = 10_000;
/// What an unknown client id is recorded as.
pub const UNKNOWN_CLIENT: &str = "(unknown)";

/// Audit events waiting to be written, and the retention of the trail.
#[derive(Debug)]
pub struct AuditTrail {
    /// Events older than this are pruned; `None` keeps everything.
    retention: Option<TimeDelta>,
    /// The aggregation window of failed authentications (the throttle's window).
    window: TimeDelta,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// When the current window of failures started (its first failure).
    window_started: Option<NaiveDateTime>,
    failures: HashMap<FailureKey, Tally>,
    overflow: Option<Tally>,
    /// Client ids with a row of their own, per address key, in this window.
    ids_per_address: HashMap<Option<IpAddr>, u32>,
    events: Vec<AuditEvent>,
    /// Locks and alarms noted in this window, and those beyond [`MAX_NOTED_PER_WINDOW`].
    noted: usize,
    noted_overflow: Option<Tally>,
    dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FailureKey {
    kind: ActorKind,
    /// The client id as sent, if it looks like one; checked against the database when written.
    client_id: Option<String>,
    address: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: i64,
    first: NaiveDateTime,
    last: NaiveDateTime,
}

impl Tally {
    fn new(at: NaiveDateTime) -> Self {
        Self {
            count: 0,
            first: at,
            last: at,
        }
    }

    fn add(&mut self, at: NaiveDateTime) {
        self.count += 1;
        self.first = self.first.min(at);
        self.last = self.last.max(at);
    }
}

impl AuditTrail {
    pub fn new(retention: Option<TimeDelta>, window: TimeDelta) -> Self {
        Self {
            retention,
            window,
            pending: Mutex::default(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one failed authentication of `client_id` (as sent) from `address`.
    pub fn note_auth_failure(
        &self,
        kind: ActorKind,
        client_id: &str,
        address: Option<IpAddr>,
        now: NaiveDateTime,
    ) {
        let mut key = FailureKey {
            kind,
            client_id: looks_like_client_id(client_id).then(|| client_id.to_string()),
            address,
        };
        let mut pending = self.pending();
        pending.window_started.get_or_insert(now);
        if key.client_id.is_some() && !pending.failures.contains_key(&key) {
            let ids = pending
                .ids_per_address
                .entry(address.map(address_key))
                .or_default();
            if *ids >= MAX_CLIENT_IDS_PER_ADDRESS {
                key.client_id = None;
            } else {
                *ids += 1;
            }
        }
        let full = pending.failures.len() >= MAX_FAILURE_ROWS_PER_WINDOW;
        match pending.failures.get_mut(&key) {
            Some(tally) => tally.add(now),
            None if full => pending.overflow.get_or_insert(Tally::new(now)).add(now),
            None => {
                let mut tally = Tally::new(now);
                tally.add(now);
                pending.failures.insert(key, tally);
            }
        }
    }

    /// Keeps a lock or alarm noted on the request path until the runner writes it; past
    /// [`MAX_NOTED_PER_WINDOW`] in a window, it is only counted.
    pub fn note(&self, event: AuditEvent) {
        let mut pending = self.pending();
        pending.window_started.get_or_insert(event.occurred_at);
        if pending.noted >= MAX_NOTED_PER_WINDOW {
            let at = event.occurred_at;
            pending.noted_overflow.get_or_insert(Tally::new(at)).add(at);
        } else if pending.events.len() < MAX_PENDING_EVENTS {
            pending.noted += 1;
            pending.events.push(event);
        } else {
            pending.dropped += 1;
        }
    }

    /// Takes the pending events, and the failures when their window is over (or `all`).
    fn take(&self, now: NaiveDateTime, all: bool) -> Taken {
        let mut pending = self.pending();
        let window_over = pending
            .window_started
            .is_some_and(|started| all || now >= started + self.window);
        let dropped = std::mem::take(&mut pending.dropped);
        let events = std::mem::take(&mut pending.events);
        let (failures, overflow, noted_overflow) = if window_over {
            pending.window_started = None;
            pending.ids_per_address.clear();
            pending.noted = 0;
            (
                std::mem::take(&mut pending.failures),
                pending.overflow.take(),
                pending.noted_overflow.take(),
            )
        } else {
            (HashMap::new(), None, None)
        };
        Taken {
            events,
            failures,
            overflow,
            noted_overflow,
            dropped,
        }
    }

    /// Puts back what could not be written, so an outage delays the trail rather than losing it
    /// (within the bounds above).
    fn put_back(&self, taken: Taken) {
        let mut pending = self.pending();
        for (key, tally) in taken.failures {
            let started = pending.window_started.get_or_insert(tally.first);
            *started = (*started).min(tally.first);
            let room = pending.failures.len() < MAX_FAILURE_ROWS_PER_WINDOW;
            match pending.failures.get_mut(&key) {
                Some(existing) => merge(existing, tally),
                None if room => {
                    pending.failures.insert(key, tally);
                }
                None => add_to_overflow(&mut pending, tally),
            }
        }
        if let Some(overflow) = taken.overflow {
            add_to_overflow(&mut pending, overflow);
        }
        if let Some(noted) = taken.noted_overflow {
            match &mut pending.noted_overflow {
                Some(existing) => merge(existing, noted),
                None => pending.noted_overflow = Some(noted),
            }
        }
        let room = MAX_PENDING_EVENTS.saturating_sub(pending.events.len());
        let kept = taken.events.len().min(room);
        pending.dropped += (taken.events.len() - kept) as u64 + taken.dropped;
        pending.events.extend(taken.events.into_iter().take(kept));
    }
}

fn merge(into: &mut Tally, other: Tally) {
    into.count += other.count;
    into.first = into.first.min(other.first);
    into.last = into.last.max(other.last);
}

fn add_to_overflow(pending: &mut Pending, tally: Tally) {
    match &mut pending.overflow {
        Some(existing) => merge(existing, tally),
        None => pending.overflow = Some(tally),
    }
}

struct Taken {
    events: Vec<AuditEvent>,
    failures: HashMap<FailureKey, Tally>,
    overflow: Option<Tally>,
    noted_overflow: Option<Tally>,
    dropped: u64,
}

/// The target of a lock or alarm when it is a client id (not an address), to be checked.
fn client_id_target(event: &AuditEvent) -> Option<&str> {
    let target = event.target.as_deref()?;
    (matches!(
        event.action,
        Action::ThrottleLocked | Action::ClientUnderAttack
    ) && target.parse::<IpAddr>().is_err()
        && looks_like_client_id(target))
    .then_some(target)
}

/// Writes what the request path noted: locks and alarms at once, failed authentications when
/// their window is over. Run by the background runner every second, and once more at a stop.
pub fn flush_auth_failures(
    context: &Context,
    now: NaiveDateTime,
    last: bool,
) -> Result<(), StoreError> {
    let trail = &context.audit;
    let taken = trail.take(now, last);
    if taken.dropped > 0 {
        log::warn!(
            "the audit trail dropped {} events noted while the database did not take them",
            taken.dropped
        );
    }
    if taken.events.is_empty()
        && taken.failures.is_empty()
        && taken.overflow.is_none()
        && taken.noted_overflow.is_none()
    {
        return Ok(());
    }
    // Client ids as sent, in the failures and as the targets of locks and alarms: only those that
    // name a client are kept.
    let sent: Vec<&str> = taken
        .failures
        .keys()
        .filter_map(|key| key.client_id.as_deref())
        .chain(taken.events.iter().filter_map(client_id_target))
        .collect();
    let existing = match context.store.existing_client_ids(&sent) {
        Ok(existing) => existing,
        Err(error) => {
            trail.put_back(taken);
            return Err(error);
        }
    };
    let mut events = taken.events.clone();
    for event in &mut events {
        if client_id_target(event).is_some_and(|id| !existing.contains(id)) {
            event.target = Some(UNKNOWN_CLIENT.to_string());
        }
    }
    for (key, tally) in &taken.failures {
        let client_id = key
            .client_id
            .as_deref()
            .filter(|id| existing.contains(*id))
            .unwrap_or(UNKNOWN_CLIENT);
        let mut event = AuditEvent::new(
            tally.first,
            AuditActor::client(key.kind, Some(client_id)),
            Action::ClientAuthFailed,
            None,
        )
        .from_address(key.address);
        event.outcome = Outcome::Failure;
        event.occurrences = tally.count;
        event.last_at = tally.last;
        events.push(event);
    }
    if let Some(overflow) = taken.overflow {
        let mut event = AuditEvent::new(
            overflow.first,
            AuditActor::system(),
            Action::ClientAuthFailuresOverflow,
            None,
        )
        .with_detail(format!(
            "failed client authentications beyond {MAX_FAILURE_ROWS_PER_WINDOW} client id and \
             address pairs in one window"
        ));
        event.outcome = Outcome::Failure;
        event.occurrences = overflow.count;
        event.last_at = overflow.last;
        events.push(event);
    }
    if let Some(noted) = taken.noted_overflow {
        let mut event = AuditEvent::new(
            noted.first,
            AuditActor::system(),
            Action::ThrottleLocked,
            None,
        )
        .with_detail(format!(
            "locks and alarms beyond {MAX_NOTED_PER_WINDOW} in one window, counted together"
        ));
        event.outcome = Outcome::Failure;
        event.occurrences = noted.count;
        event.last_at = noted.last;
        events.push(event);
    }
    if let Err(error) = context.store.append_audit_events(&events) {
        trail.put_back(taken);
        return Err(error);
    }
    Ok(())
}

/// Deletes events past the retention; returns how many.
pub fn prune(context: &Context, now: NaiveDateTime) -> Result<usize, StoreError> {
    let Some(retention) = context.audit.retention else {
        return Ok(0);
    };
    let before = now
        .checked_sub_signed(retention)
        .unwrap_or(NaiveDateTime::MIN);
    let pruned = context.store.prune_audit_events(before)?;
    if pruned > 0 {
        log::info!("pruned {pruned} audit events older than {before} UTC");
    }
    Ok(pruned)
}

/// Events matching `query`, newest first (the operator's `tokenwarden audit list`).
pub fn list(context: &Context, query: &AuditQuery) -> Result<Vec<AuditEvent>, ServiceError> {
    Ok(context.store.audit_events(query)?)
}

/// [`list`] for an admin of the admin API: platform admins only, since the trail covers every
/// site.
pub fn list_for_admin(
    context: &Context,
    admin: &Admin,
    query: &AuditQuery,
) -> Result<Vec<AuditEvent>, ServiceError> {
    if !admin.manages_every_site() {
        return Err(AdminRefusal::PlatformAdminsOnly.into());
    }
    list(context, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0)
            .unwrap()
            .naive_utc()
    }

    fn trail() -> AuditTrail {
        AuditTrail::new(None, TimeDelta::seconds(60))
    }

    #[test]
    fn failures_aggregate_per_client_id_and_address_until_the_window_ends() {
        let trail = trail();
        let address = Some("192.0.2.1".parse().unwrap());
        for second in 0..10 {
            trail.note_auth_failure(ActorKind::Site, "site_abc", address, at(second));
        }
        trail.note_auth_failure(ActorKind::Site, "site_abc", None, at(3));
        assert!(trail.take(at(30), false).failures.is_empty(), "window open");
        let taken = trail.take(at(61), false);
        assert_eq!(taken.failures.len(), 2);
        let key = FailureKey {
            kind: ActorKind::Site,
            client_id: Some("site_abc".into()),
            address,
        };
        let tally = taken.failures[&key];
        assert_eq!((tally.count, tally.first, tally.last), (10, at(0), at(9)));
        assert!(trail.take(at(200), false).failures.is_empty());
    }

    #[test]
    fn rows_per_window_are_capped_and_the_rest_counted_in_one_overflow() {
        let trail = trail();
        for n in 0..(MAX_FAILURE_ROWS_PER_WINDOW + 250) {
            let address = Some(IpAddr::from((n as u32).to_be_bytes()));
            trail.note_auth_failure(ActorKind::Site, "site_abc", address, at(0));
        }
        let taken = trail.take(at(0), true);
        assert_eq!(taken.failures.len(), MAX_FAILURE_ROWS_PER_WINDOW);
        assert_eq!(taken.overflow.map(|o| o.count), Some(250));
    }

    #[test]
    fn what_does_not_look_like_a_client_id_is_never_kept() {
        let trail = trail();
        let secret_in_the_wrong_field = format!("twk_{}", "A".repeat(49));
        trail.note_auth_failure(ActorKind::Site, &secret_in_the_wrong_field, None, at(0));
        trail.note_auth_failure(ActorKind::Site, "a\"b", None, at(0));
        let taken = trail.take(at(0), true);
        assert!(taken.failures.keys().all(|key| key.client_id.is_none()));
        assert_eq!(taken.failures.values().map(|t| t.count).sum::<i64>(), 2);
    }

    #[test]
    fn one_address_adds_rows_for_at_most_ten_client_ids_a_window() {
        let trail = trail();
        let guesser = Some("192.0.2.66".parse().unwrap());
        for n in 0..500 {
            trail.note_auth_failure(
                ActorKind::Site,
                &format!("site_guess{n:0>13}"),
                guesser,
                at(0),
            );
        }
        trail.note_auth_failure(
            ActorKind::Site,
            "site_target",
            Some("198.51.100.1".parse().unwrap()),
            at(1),
        );
        let taken = trail.take(at(0), true);
        assert_eq!(
            taken.failures.len(),
            MAX_CLIENT_IDS_PER_ADDRESS as usize + 2
        );
        let unknown = FailureKey {
            kind: ActorKind::Site,
            client_id: None,
            address: guesser,
        };
        assert_eq!(
            taken.failures[&unknown].count,
            500 - i64::from(MAX_CLIENT_IDS_PER_ADDRESS)
        );
        assert!(taken.overflow.is_none(), "the real target keeps its row");
    }

    #[test]
    fn locks_and_alarms_past_the_cap_are_counted_in_one_row() {
        let trail = trail();
        for n in 0..(MAX_NOTED_PER_WINDOW + 30) {
            let target = Some(format!("192.0.2.{}", n % 250));
            trail.note(AuditEvent::new(
                at(0),
                AuditActor::system(),
                Action::ThrottleLocked,
                target,
            ));
        }
        let taken = trail.take(at(61), false);
        assert_eq!(taken.events.len(), MAX_NOTED_PER_WINDOW);
        assert_eq!(taken.noted_overflow.map(|tally| tally.count), Some(30));
    }

    #[test]
    fn what_could_not_be_written_is_put_back() {
        let trail = trail();
        trail.note_auth_failure(ActorKind::Admin, "adm_x", None, at(0));
        trail.note(AuditEvent::new(
            at(1),
            AuditActor::system(),
            Action::ThrottleLocked,
            None,
        ));
        let taken = trail.take(at(100), false);
        assert_eq!((taken.failures.len(), taken.events.len()), (1, 1));
        trail.put_back(taken);
        trail.note_auth_failure(ActorKind::Admin, "adm_x", None, at(120));
        let again = trail.take(at(200), false);
        assert_eq!(again.events.len(), 1);
        let tally = again.failures.values().next().copied().unwrap();
        assert_eq!((tally.count, tally.first, tally.last), (2, at(0), at(120)));
    }
}
