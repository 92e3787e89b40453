//! The HTTP endpoints of `coldsweep run` on `COLDSWEEP_METRICS_ADDR`:
//! `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (the catalog
//! answers and the last sweep did not fail as a whole). One small HTTP/1
//! server; GET and HEAD only, anything else 404 (405 for another method).
//!
//! It runs on its own tasks and only reads what the archiver publishes
//! (`Archiver::last_sweep`), so it never holds a sweep up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use coldsweep::{Catalog, LastSweep};
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

/// How long the catalog has to answer `/readyz`'s query.
const CATALOG_WITHIN: Duration = Duration::from_secs(2);

/// How long one answer of the catalog stands for the next `/readyz`: probes
/// from many places cost the catalog at most one query a second.
const CATALOG_ANSWER_KEPT: Duration = Duration::from_secs(1);

/// How often the exporter's upkeep runs (its own listener's default).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What the endpoints read.
pub(crate) struct Health {
    catalog: Arc<dyn Catalog>,
    last_sweep: watch::Receiver<Option<LastSweep>>,
    metrics: PrometheusHandle,
    /// The catalog's last answer to the readiness query, and when it came.
    catalog_answer: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    pub(crate) fn new(
        catalog: Arc<dyn Catalog>,
        last_sweep: watch::Receiver<Option<LastSweep>>,
        metrics: PrometheusHandle,
    ) -> Self {
        Self {
            catalog,
            last_sweep,
            metrics,
            catalog_answer: Mutex::new(None),
        }
    }

    /// `Ok` when ready, else the reason, one line.
    async fn readiness(&self) -> Result<(), String> {
        self.catalog_answers().await?;
        let last = self.last_sweep.borrow().clone();
        if let Some(LastSweep {
            ended_at,
            failure: Some(failure),
        }) = last
        {
            return Err(one_line(&format!(
                "the last sweep (ended {}) failed: {} ({})",
                ended_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                failure.message,
                failure.what
            )));
        }
        Ok(())
    }

    /// Whether the catalog answered a query just now (within [`CATALOG_WITHIN`]).
    async fn catalog_answers(&self) -> Result<(), String> {
        let mut kept = self.catalog_answer.lock().await;
        if let Some((at, answer)) = &*kept
            && at.elapsed() < CATALOG_ANSWER_KEPT
        {
            return answer.clone();
        }
        let answer =
            match tokio::time::timeout(CATALOG_WITHIN, self.catalog.check_migrations()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(one_line(&format!(
                    "the catalog did not answer: {}",
                    e.chain()
                ))),
                Err(_) => Err(format!(
                    "the catalog did not answer within {} s",
                    CATALOG_WITHIN.as_secs()
                )),
            };
        *kept = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn answer(&self, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness().await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
            },
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz and /readyz are served\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Take `addr` now, so a port in use stops start-up before any sweep.
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("COLDSWEEP_METRICS_ADDR: serve metrics on {addr}"))
}

/// Serve `health` on `listener` until the process ends, and keep the
/// exporter's upkeep running.
pub(crate) fn serve(listener: TcpListener, health: Health) {
    let health = Arc::new(health);
    let metrics = health.metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            metrics.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let health = health.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let health = health.clone();
                    async move { Ok::<_, std::convert::Infallible>(health.answer(&request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(socket);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
                }
            });
        }
    });
}
