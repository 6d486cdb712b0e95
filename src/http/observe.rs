//! The one middleware around every request: it times the request once, then counts and times it
//! in the metrics under its route pattern and adds its access-log line, so both report the same
//! status and latency.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::access_log;
use super::metrics::Metrics;

pub(crate) async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = request.app_data::<web::Data<Metrics>>().cloned();
    let endpoint = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.call(request).await;
    let latency = started.elapsed();
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    }
    .as_u16();
    // A request that failed outside any handler has no response to log; every handler's own
    // errors are responses by now.
    if let (Ok(response), true) = (&response, access_log::enabled()) {
        let request = response.request();
        access_log::record(request.method(), request.path(), status, latency);
    }
    if let Some(metrics) = metrics {
        metrics.observe(endpoint, status, latency.as_secs_f64());
    }
    response
}
