//! Prometheus metrics, served on their own listener when `metrics-listen`
//! is set (off by default), in the OpenMetrics text format.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::credentials::issuer::{CertificateReport, CredentialSource, FailureKind, FetchFuture};
use crate::credentials::refresh::Snapshot;
use crate::net::accept::accept_until;
use crate::net::slots::{Holder, Slots};
use crate::role::Association;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabels {
    thread: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
}

/// Every metric the daemon keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    requests_all: Counter,
    tokens_issued: Counter,
    tokens_rejected: Counter,
    sts_calls: Counter,
    sts_failures: Family<FailureLabels, Counter>,
    sts_seconds: Histogram,
    refreshes: Counter,
    revocations: Counter,
    connections_open: Gauge,
    thread_connections: Family<ThreadLabels, Gauge>,
    expiry_seconds: Gauge<f64, AtomicU64>,
    certificate_seconds: Gauge<f64, AtomicU64>,
    certificate: std::sync::Mutex<Option<CertificateReport>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hostrole");
        let m = Metrics {
            requests: Family::default(),
            requests_all: Counter::default(),
            tokens_issued: Counter::default(),
            tokens_rejected: Counter::default(),
            sts_calls: Counter::default(),
            sts_failures: Family::default(),
            sts_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            refreshes: Counter::default(),
            revocations: Counter::default(),
            connections_open: Gauge::default(),
            thread_connections: Family::default(),
            expiry_seconds: Gauge::default(),
            certificate_seconds: Gauge::default(),
            certificate: std::sync::Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "IMDS requests answered, by route and status",
            m.requests.clone(),
        );
        registry.register(
            "tokens_issued",
            "IMDSv2 session tokens issued",
            m.tokens_issued.clone(),
        );
        registry.register(
            "tokens_rejected",
            "requests refused for a missing, invalid or expired token",
            m.tokens_rejected.clone(),
        );
        registry.register(
            "sts_calls",
            "calls to the credential source (STS AssumeRole)",
            m.sts_calls.clone(),
        );
        registry.register(
            "sts_failures",
            "failed calls to the credential source, by kind",
            m.sts_failures.clone(),
        );
        registry.register(
            "sts_call_duration_seconds",
            "duration of calls to the credential source",
            m.sts_seconds.clone(),
        );
        registry.register(
            "refreshes",
            "successful credential refreshes",
            m.refreshes.clone(),
        );
        registry.register(
            "revocations",
            "roles removed or replaced",
            m.revocations.clone(),
        );
        registry.register(
            "connections_open",
            "IMDS connections open",
            m.connections_open.clone(),
        );
        registry.register(
            "thread_connections",
            "IMDS connections each serving thread holds open (kept alive, or waiting for a request)",
            m.thread_connections.clone(),
        );
        registry.register(
            "credentials_expiry_seconds",
            "seconds until the served credentials expire (0 when none are served)",
            m.expiry_seconds.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "seconds until the host's certificate expires (issuer roles-anywhere; 0 otherwise)",
            m.certificate_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one answered IMDS request.
    pub fn observe_request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.requests_all.inc();
        match (route, status) {
            ("token", 200) => {
                self.tokens_issued.inc();
            }
            (_, 401) => {
                self.tokens_rejected.inc();
            }
            _ => {}
        }
    }

    /// Requests answered since start.
    pub fn requests_total(&self) -> u64 {
        self.requests_all.get()
    }

    /// Tokens issued since start.
    pub fn tokens_issued_total(&self) -> u64 {
        self.tokens_issued.get()
    }

    /// The host's certificate as the issuer last read it.
    pub fn certificate(&self) -> Option<CertificateReport> {
        self.certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a removed or replaced role.
    pub fn observe_revocation(&self) {
        self.revocations.inc();
    }

    /// A connection opened; the guard closes it in the gauge when dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_open.inc();
        ConnectionGuard(self.clone())
    }

    /// The gauge of the connections serving thread `thread` holds open.
    pub fn thread_connections(&self, thread: usize) -> Gauge {
        let thread = u32::try_from(thread).unwrap_or(u32::MAX);
        self.thread_connections
            .get_or_create(&ThreadLabels { thread })
            .clone()
    }

    /// The exposition text, with the expiry gauge taken from `snapshot` now.
    pub fn render(&self, snapshot: &Snapshot, clock: &SharedClock) -> String {
        let now = clock.now();
        let left = snapshot
            .usable(now, clock.boot_time())
            .and_then(|c| c.expiration.duration_since(now).ok())
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.expiry_seconds.set(left);
        let cert_left = self
            .certificate()
            .and_then(|c| c.not_after.duration_since(now).ok())
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.certificate_seconds.set(cert_left);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Decrements the open-connections gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// A credential source that counts and times the calls of another.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn CredentialSource>,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn CredentialSource>, metrics: Arc<Metrics>) -> Self {
        Instrumented { inner, metrics }
    }
}

impl CredentialSource for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn certificate(&self) -> Option<CertificateReport> {
        self.inner.certificate()
    }

    fn fetch<'a>(&'a self, association: &'a Association) -> FetchFuture<'a> {
        Box::pin(async move {
            self.metrics.sts_calls.inc();
            let started = tokio::time::Instant::now();
            let result = self.inner.fetch(association).await;
            if let Some(c) = self.inner.certificate() {
                *self
                    .metrics
                    .certificate
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(c);
            }
            self.metrics
                .sts_seconds
                .observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(_) => {
                    self.metrics.refreshes.inc();
                }
                Err(e) => {
                    let kind = match e.kind {
                        FailureKind::Transient => "transient",
                        FailureKind::Throttled => "throttled",
                        FailureKind::BaseCredentialsRejected => "base_credentials_rejected",
                        FailureKind::Fatal => "fatal",
                    };
                    self.metrics
                        .sts_failures
                        .get_or_create(&FailureLabels { kind })
                        .inc();
                }
            }
            result
        })
    }
}

/// Most metrics connections open at once; past it a new one is closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Most metrics connections one caller (a local uid, else an address)
/// holds at once.
pub const MAX_CONNECTIONS_PER_CALLER: usize = 16;
/// Time a metrics client has to send its request head, and most time one
/// connection is kept.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `GET /metrics` on `listener` until `shutdown` completes, with
/// bounded connections like every other listener.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clock: SharedClock,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics");
    }
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CALLER, false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(8192)
        .max_headers(32);
    accept_until(&listener, "metrics", &shutdown, |stream, peer| {
        let holder = stream
            .local_addr()
            .ok()
            .and_then(|local| {
                crate::net::peer::tcp_socket_owner(peer, local)
                    .ok()
                    .flatten()
            })
            .map_or(Holder::Addr(peer.ip().to_canonical()), |o| {
                Holder::Uid(o.uid)
            });
        let slot = match slots.acquire(holder) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(%peer, "metrics: {why}; closing");
                return;
            }
        };
        let (metrics, snapshots, clock) = (metrics.clone(), snapshots.clone(), clock.clone());
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let response = if req.method() == http::Method::GET && req.uri().path() == "/metrics" {
                let body = metrics.render(&snapshots.borrow(), &clock);
                Response::builder()
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(body)))
            } else {
                Response::builder()
                    .status(http::StatusCode::NOT_FOUND)
                    .body(Full::new(Bytes::from_static(b"Not Found")))
            };
            async move { response }
        });
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            // A scrape is not worth holding up a stop for.
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(slot);
        });
    })
    .await;
}

/// Binds the metrics listener, with the listen queue every listener has.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crate::net::listen::bind(addr)
}
