//! `GET /metrics` in Prometheus text format, and the request metrics `observe.rs` feeds.

use std::sync::Mutex;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::domain::audit::ActorKind;
use crate::service::Context;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route pattern, never the raw path (which could carry anything a client sends).
    endpoint: &'static str,
    status: u16,
}

/// The registry and the request metrics; shared by all workers.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
}

impl Metrics {
    pub fn new(context: Context) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 50 µs to ~1.6 s.
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let mut registry = Registry::with_prefix("tokenwarden");
        registry.register(
            "http_requests",
            "HTTP requests by endpoint and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint and status",
            latency.clone(),
        );
        registry.register_collector(Box::new(ServiceCollector { context }));
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
        }
    }

    /// The request count and latency histogram of one route pattern and status, to be kept by
    /// the caller: they stay registered, so each request need not look its labels up again.
    pub(crate) fn request_metrics(&self, endpoint: &'static str, status: u16) -> RequestMetrics {
        let labels = RequestLabels { endpoint, status };
        RequestMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
        }
    }
}

/// Handles on one route's and status' metrics (see [`Metrics::request_metrics`]).
#[derive(Debug)]
pub(crate) struct RequestMetrics {
    requests: Counter,
    latency: Histogram,
}

impl RequestMetrics {
    /// Counts and times one request.
    pub(crate) fn observe(&self, seconds: f64) {
        self.requests.inc();
        self.latency.observe(seconds);
    }
}

/// Prometheus metrics (OpenMetrics text): requests and latency per endpoint and status, tokens
/// minted and invalidated, client authentications refused by throttling, introspection cache hits
/// and misses, database pool state.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition",
        content_type = "application/openmetrics-text")))]
pub async fn serve(metrics: web::Data<Metrics>) -> HttpResponse {
    let mut text = String::new();
    let registry = metrics.registry.lock().unwrap_or_else(|p| p.into_inner());
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type(ContentType(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
                    .parse()
                    .expect("a valid media type literal"),
            ))
            .body(text),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// Reads service counters, cache counters and pool state at scrape time.
#[derive(Debug)]
struct ServiceCollector {
    context: Context,
}

impl Collector for ServiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = &self.context.counters;
        let (hits, misses) = self.context.introspection.cache_counts();
        let pool = self.context.store.pool_state();
        let changes = self.context.store.changes();
        let (by_tag, of_everything) = changes.invalidations();
        for (name, help, value) in [
            ("tokens_minted", "Token values minted", counters.minted()),
            (
                "tokens_invalidated",
                "Tokens invalidated",
                counters.invalidated(),
            ),
            (
                "client_auth_throttled",
                "Client authentication attempts refused by brute-force throttling",
                self.context.throttle.refused(),
            ),
            (
                "clients_under_attack",
                "Alarms raised for a client id failing authentication from many addresses",
                self.context.throttle.alarms(),
            ),
            (
                "introspection_cache_hits",
                "Introspections answered from memory",
                hits,
            ),
            (
                "introspection_cache_misses",
                "Introspections that read the database",
                misses,
            ),
            (
                "cache_invalidations_by_tag",
                "Changes applied to the caches by what they touched",
                by_tag,
            ),
            (
                "cache_invalidations_of_everything",
                "Changes that emptied the caches (undescribed changes, gaps, reconnections)",
                of_everything,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let mut failures = encoder.encode_descriptor(
            "client_auth_failures",
            "Failed client authentications, by kind of client",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for kind in [ActorKind::Site, ActorKind::ResourceServer, ActorKind::Admin] {
            let counter = ConstCounter::new(counters.auth_failures(kind));
            counter.encode(failures.encode_family(&KindLabel {
                kind: kind.as_str(),
            })?)?;
        }
        for (name, help, value) in [
            (
                "db_pool_connections",
                "Open database connections",
                pool.connections,
            ),
            (
                "db_pool_idle_connections",
                "Idle database connections",
                pool.idle_connections,
            ),
            (
                "caches_live",
                "1 while the caches may answer (PostgreSQL: listener connected, lease held)",
                u32::from(changes.is_live()),
            ),
        ] {
            let gauge = ConstGauge::new(i64::from(value));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(bytes) = self.context.store.sqlite_memory_bytes() {
            let gauge = ConstGauge::new(bytes);
            gauge.encode(encoder.encode_descriptor(
                "sqlite_memory",
                "Memory held by SQLite's allocator in this process: page caches, statements, schema",
                Some(&Unit::Bytes),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
