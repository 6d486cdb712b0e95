//! The one middleware around every route: it gives each request its id (`request_id`), which the
//! response carries back and every line logged meanwhile carries; it times each request once, then
//! counts and times it in the metrics under the route's pattern and adds its access-log line, so
//! both report the same status and latency.
//!
//! It wraps each resource of the route table (and the not-found service) rather than the whole
//! app, so it knows its route's pattern without matching the path again: actix's
//! `match_pattern()` walks the resource map and allocates the pattern on every request, and a
//! metrics family hashes its labels on every lookup. Here each worker's instance keeps the metric
//! handles of the statuses its route has answered with, so a request costs a short scan, an
//! atomic increment and a histogram observation (docs/performance.md).

use std::cell::RefCell;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::web;

use super::access_log;
use super::metrics::{Metrics, RequestMetrics};
use super::request_id::{self, RequestId, X_REQUEST_ID};
use super::AppState;
use crate::logging;

/// The label of requests no route matched.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Observes the requests of one route; `endpoint` is its pattern, never the raw path (which could
/// carry anything a client sends).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observe {
    endpoint: &'static str,
}

impl Observe {
    pub(crate) fn route(endpoint: &'static str) -> Self {
        Self { endpoint }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = ObserveService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveService {
            service,
            endpoint: self.endpoint,
            by_status: Rc::default(),
        }))
    }
}

/// One worker's instance for one route.
pub(crate) struct ObserveService<S> {
    service: S,
    endpoint: &'static str,
    /// The metric handles of each status this route has answered with on this worker.
    by_status: Rc<RefCell<Vec<(u16, RequestMetrics)>>>,
}

impl<S, B> Service<ServiceRequest> for ObserveService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let id = RequestId::of(request.headers());
        let logged = id.logged();
        let metrics = request.app_data::<web::Data<Metrics>>().cloned();
        let endpoint = self.endpoint;
        let by_status = Rc::clone(&self.by_status);
        let started = Instant::now();
        let response = logging::with_request_id(Some(logged), || self.service.call(request));
        Box::pin(request_id::carried(logged, async move {
            let mut response = response.await;
            let latency = started.elapsed();
            let status = match &response {
                Ok(response) => response.status(),
                Err(error) => error.as_response_error().status_code(),
            }
            .as_u16();
            // A request that failed outside any handler has no response to carry its id or to
            // log; every handler's own errors are responses by now.
            if let Ok(response) = &mut response {
                response
                    .headers_mut()
                    .insert(X_REQUEST_ID, id.into_header());
                if access_log::enabled() {
                    let request = response.request();
                    let client = match request.app_data::<web::Data<AppState>>() {
                        Some(state) => super::client_address(&state.trusted_proxies, request),
                        None => request.peer_addr().map(|peer| peer.ip()),
                    };
                    access_log::record(&access_log::Request {
                        client,
                        method: request.method(),
                        path: request.path(),
                        status,
                        latency,
                        request_id: logged.as_str(),
                    });
                }
            }
            if let Some(metrics) = metrics {
                let mut by_status = by_status.borrow_mut();
                let handles = match by_status.iter().position(|(seen, _)| *seen == status) {
                    Some(at) => &by_status[at].1,
                    None => {
                        by_status.push((status, metrics.request_metrics(endpoint, status)));
                        &by_status[by_status.len() - 1].1
                    }
                };
                handles.observe(latency.as_secs_f64());
            }
            response
        }))
    }
}
