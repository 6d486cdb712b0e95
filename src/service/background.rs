//! Every piece of work that runs on its own schedule rather than in a request: writing the batched
//! `last_used_at` times, writing the aggregated failed client authentications to the audit trail,
//! pruning the audit trail past its retention, sharing failed-authentication counts with the other
//! nodes, and (PostgreSQL) the change listener. One runner thread does the jobs, started by
//! `server` and drained in order at shutdown; use cases ask it for
//! work early through [`Wakeup`] (a full usage batch), and handlers never see it.
//!
//! A job is a value ([`Job`]) with its own interval; the runner sleeps until the earliest is due
//! or until it is woken, runs what is due, and at a stop runs each job's final pass once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::usage::Flush;
use super::Context;
use crate::clock;
use crate::store::StoreError;

/// How the runner is asked for work early, or to stop. Lives in the [`Context`], so use cases can
/// reach it; in a CLI command nothing runs behind it and requests are simply dropped.
#[derive(Debug, Default)]
pub struct Wakeup {
    requested: Mutex<Requested>,
    changed: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct Requested {
    usage_flush: bool,
    stop: bool,
}

impl Wakeup {
    /// The usage batch is full: write it now rather than at the next tick.
    pub fn request_usage_flush(&self) {
        self.update(|requested| requested.usage_flush = true);
    }

    fn request_stop(&self) {
        self.update(|requested| requested.stop = true);
    }

    fn update(&self, change: impl FnOnce(&mut Requested)) {
        change(
            &mut self
                .requested
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.changed.notify_all();
    }

    /// Waits until `deadline` or a request, and takes the requests made.
    fn wait(&self, deadline: Instant) -> Requested {
        let mut requested = self
            .requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if requested.usage_flush || requested.stop {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            requested = self
                .changed
                .wait_timeout(requested, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let taken = *requested;
        requested.usage_flush = false;
        taken
    }
}

/// The runner's schedule, from the operator's configuration.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub usage_flush_interval: Duration,
    /// How often the aggregated failed authentications are written to the audit trail.
    pub auth_failure_flush_interval: Duration,
    /// How often audit events older than the retention are deleted.
    pub audit_prune_interval: Duration,
    /// How often failed-authentication counts are exchanged with the other nodes.
    pub throttle_share_interval: Duration,
}

impl Schedule {
    pub fn new(
        usage_flush_interval: Duration,
        audit_flush_interval: Duration,
        throttle_share_interval: Duration,
    ) -> Self {
        let at_least = |interval: Duration| interval.max(Duration::from_millis(10));
        Self {
            usage_flush_interval: at_least(usage_flush_interval),
            auth_failure_flush_interval: at_least(audit_flush_interval),
            audit_prune_interval: Duration::from_secs(3600),
            throttle_share_interval: at_least(throttle_share_interval),
        }
    }
}

/// The kinds of work the runner does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// `service::usage`: the batched `last_used_at` times.
    FlushUsage,
    /// `service::audit`: failed client authentications, one row per client id and address.
    FlushAuthFailures,
    /// `service::audit`: events past the retention.
    PruneAudit,
    /// The store's change log (SQLite): records every process has long read.
    PruneChangeLog,
    /// `service::client_auth`: this node's failed authentications for the other nodes' throttles,
    /// and theirs for this one's.
    ShareFailureCounts,
}

impl Job {
    const ALL: [Job; 5] = [
        Job::FlushUsage,
        Job::FlushAuthFailures,
        Job::PruneAudit,
        Job::PruneChangeLog,
        Job::ShareFailureCounts,
    ];

    fn interval(self, schedule: &Schedule) -> Duration {
        match self {
            Job::FlushUsage => schedule.usage_flush_interval,
            Job::FlushAuthFailures => schedule.auth_failure_flush_interval,
            Job::PruneAudit => schedule.audit_prune_interval,
            Job::PruneChangeLog => Duration::from_secs(600),
            Job::ShareFailureCounts => schedule.throttle_share_interval,
        }
    }

    /// Runs one pass; `last` is the pass before the process stops.
    fn run(self, context: &Context, last: bool) -> Result<(), StoreError> {
        let now = clock::now();
        match self {
            Job::FlushUsage => {
                let flush = if last { Flush::Final } else { Flush::Periodic };
                context
                    .introspection
                    .usage
                    .flush(&context.store, now, flush)
                    .map(drop)
            }
            Job::FlushAuthFailures => super::audit::flush_auth_failures(context, now, last),
            Job::PruneAudit if last => Ok(()),
            Job::PruneAudit => super::audit::prune(context, now).map(drop),
            Job::PruneChangeLog if last => Ok(()),
            Job::PruneChangeLog => context.store.prune_change_log(now).map(drop),
            Job::ShareFailureCounts => super::client_auth::share_failure_counts(context, now),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Job::FlushUsage => "record token usage",
            Job::FlushAuthFailures => "record failed client authentications",
            Job::PruneAudit => "prune the audit trail",
            Job::PruneChangeLog => "prune the change log",
            Job::ShareFailureCounts => "share failed authentications with the other nodes",
        }
    }
}

/// The runner thread and the change listener; stop them with [`Runner::shutdown`].
pub struct Runner {
    wakeup: Arc<Wakeup>,
    thread: Option<JoinHandle<()>>,
    stop_listener: Arc<AtomicBool>,
}

impl Runner {
    /// Starts the change listener (PostgreSQL, when caches are on) and the runner thread.
    pub fn start(context: &Context, schedule: Schedule) -> std::io::Result<Self> {
        let stop_listener = Arc::new(AtomicBool::new(false));
        // Without caches there is nothing to keep exact, and no lease for changes to wait for.
        if context.introspection.caches_on() {
            context.store.start_change_listener(stop_listener.clone());
        }
        let wakeup = Arc::clone(&context.background);
        let thread_context = context.clone();
        let thread = std::thread::Builder::new()
            .name("tokenwarden-background".into())
            .spawn(move || run(&thread_context, &schedule))?;
        Ok(Self {
            wakeup,
            thread: Some(thread),
            stop_listener,
        })
    }

    /// Runs every job's last pass (the usage batch and failed authentications still pending) and
    /// stops the threads. Call it once the server has stopped taking requests.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop_listener.store(true, Ordering::Release);
        self.wakeup.request_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

fn run(context: &Context, schedule: &Schedule) {
    let started = Instant::now();
    // The first pruning a minute after the start, so a node that restarts often still prunes.
    let mut due: Vec<(Job, Instant)> = Job::ALL
        .iter()
        .map(|&job| {
            let first = match job {
                Job::PruneAudit => job.interval(schedule).min(Duration::from_secs(60)),
                _ => job.interval(schedule),
            };
            (job, started + first)
        })
        .collect();
    loop {
        let earliest = due.iter().map(|&(_, at)| at).min().unwrap_or(started);
        let requested = context.background.wait(earliest);
        if requested.stop {
            break;
        }
        let now = Instant::now();
        for (job, at) in &mut due {
            let asked = requested.usage_flush && *job == Job::FlushUsage;
            if *at <= now || asked {
                if let Err(error) = job.run(context, false) {
                    log::warn!("could not {} yet: {error}", job.describe());
                }
                *at = now + job.interval(schedule);
            }
        }
    }
    for job in Job::ALL {
        finish(context, job);
    }
}

/// A job's last pass. A refused one (the database is busy or away) is tried a few more times over
/// about a second; then what is lost is said at error level rather than the process exiting
/// quietly.
fn finish(context: &Context, job: Job) {
    for attempt in 0..6 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        match job.run(context, true) {
            Ok(()) => return,
            Err(error) if attempt == 0 => log::warn!("could not {} yet: {error}", job.describe()),
            Err(_) => {}
        }
    }
    match job {
        Job::FlushUsage => log::error!(
            "stopping without recording the last use of {} tokens: the database did not take \
             the last usage batch",
            context.introspection.usage.due()
        ),
        _ => log::error!("stopping without being able to {}", job.describe()),
    }
}
