//! The write fence: a replica writes to the API server only while its
//! leader term is valid.
//!
//! Leader election alone does not keep a replica that lost its lease from
//! writing: a process paused (SIGSTOP, a long GC-like stall, a frozen VM)
//! while it led resumes with reconciles in flight, and they would finish
//! their writes after a standby has taken over. So every mutating request
//! (POST, PUT, PATCH, DELETE) of the operator's clients passes a local check
//! first: the term, renewed by the election loop, must not have ended by
//! the monotonic clock, which keeps running while the process is stopped.
//! The term ends [`TERM_MARGIN`] before the lease could expire for a
//! standby, for clock skew and requests in flight. Reads are never fenced:
//! a standby may watch.
//!
//! The fence sits below kube's retry layer, so a retried write is checked
//! again. What it cannot stop is a write that passed the check and then
//! stays stalled, in this process or on the wire, for longer than the margin.

use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures::{
    TryFutureExt,
    future::{Either, MapErr, Ready, ready},
};
use http::{Method, Request};
use kube::{
    Client,
    client::{Body, ClientBuilder, retry::RetryPolicy},
};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, buffer::BufferLayer, retry::RetryLayer};

use super::{metrics::Metrics, shards::Territory};

/// How long before the lease could expire for a standby this replica stops
/// writing: room for clock skew between replicas and for requests in flight.
pub const TERM_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether this process may write now. Cheap to clone; clones share the term.
#[derive(Clone)]
pub struct WriteFence {
    term: Option<Arc<Mutex<Option<Instant>>>>,
    /// Namespaces another shard's holder claims are fenced too (see
    /// [`super::shards`]), whatever reconcile writes there.
    territory: Option<Territory>,
}

impl std::fmt::Debug for WriteFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFence")
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

impl WriteFence {
    /// A fence that is always open: without leader election this process is
    /// the only writer by configuration.
    pub fn unfenced() -> Self {
        Self {
            term: None,
            territory: None,
        }
    }

    /// A fence that is closed until a term is granted with [`WriteFence::extend_until`].
    pub fn closed() -> Self {
        Self {
            term: Some(Arc::default()),
            territory: None,
        }
    }

    /// This fence, also closed for the namespaces `territory` refuses.
    pub fn within(mut self, territory: Territory) -> Self {
        self.territory = Some(territory);
        self
    }

    /// Why a write to `path` must not be sent now, if so.
    fn refusal(&self, path: &str) -> Option<&'static str> {
        if !self.allows_writes() {
            return Some(
                "this replica's leader term has ended (it must not write until it leads again)",
            );
        }
        let namespace = path_namespace(path)?;
        self.territory
            .as_ref()?
            .refusal(namespace)
            .map(|_| "another shard's holder claims this namespace now")
    }

    /// Writes are allowed until `end` (the lease was renewed).
    pub fn extend_until(&self, end: Instant) {
        if let Some(term) = &self.term {
            *lock(term) = Some(end);
        }
    }

    /// Writes are refused from now on (the lease is lost or given up).
    pub fn close(&self) {
        if let Some(term) = &self.term {
            *lock(term) = None;
        }
    }

    /// When the current term ends: `None` when closed, and also when unfenced.
    pub fn term_end(&self) -> Option<Instant> {
        self.term.as_ref().and_then(|term| *lock(term))
    }

    /// Whether a write may be sent now.
    pub fn allows_writes(&self) -> bool {
        match &self.term {
            None => true,
            Some(term) => lock(term).is_some_and(|end| Instant::now() < end),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded value is a plain Option<Instant>: a panic elsewhere cannot
    // leave it half-written.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Requests that may wait for the fenced stack, as in kube's own client.
const BUFFER: usize = 1024;

/// What a fenced write fails with.
#[derive(thiserror::Error, Debug)]
#[error("{method} {path} refused: {reason}")]
pub struct Fenced {
    method: Method,
    path: String,
    reason: &'static str,
}

/// The namespace of a request path (`/api/v1/namespaces/<ns>/...`,
/// `/apis/<group>/<version>/namespaces/<ns>/...`), if it names one.
fn path_namespace(path: &str) -> Option<&str> {
    let mut parts = path.split('/');
    parts.find(|part| *part == "namespaces")?;
    let namespace = parts.next()?;
    // `/api/v1/namespaces/<ns>` itself is a write to the namespace object.
    parts.next()?;
    Some(namespace).filter(|ns| !ns.is_empty())
}

/// A client from `config` whose writes pass `fence` and are counted (and
/// logged at debug level) in `metrics`. kube's retries of 429/503/504 answers
/// wrap the fence, so every attempt is checked.
pub fn client(
    mut config: kube::Config,
    fence: WriteFence,
    metrics: Metrics,
) -> kube::Result<Client> {
    let retry = config.default_retry;
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config)?.with_layer(&FenceLayer { fence, metrics });
    Ok(if retry {
        // Retries need a service they can clone; the buffer is one.
        builder
            .with_layer(&BufferLayer::<Request<Body>>::new(BUFFER))
            .with_layer(&RetryLayer::new(RetryPolicy::server_retry()))
            .build()
    } else {
        builder.build()
    })
}

/// The tower layer of [`WriteFence`].
#[derive(Clone)]
pub struct FenceLayer {
    fence: WriteFence,
    metrics: Metrics,
}

impl FenceLayer {
    /// A layer that checks writes against `fence` and counts them in `metrics`.
    pub fn new(fence: WriteFence, metrics: Metrics) -> Self {
        Self { fence, metrics }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = FenceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FenceService {
            inner,
            fence: self.fence.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// A service that refuses writes while the fence is closed.
#[derive(Clone)]
pub struct FenceService<S> {
    inner: S,
    fence: WriteFence,
    metrics: Metrics,
}

impl<S> Service<Request<Body>> for FenceService<S>
where
    S: Service<Request<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        Either<MapErr<S::Future, fn(S::Error) -> BoxError>, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let method = request.method().clone();
        if mutating(&method) {
            let path = request.uri().path().to_string();
            let refusal = self.fence.refusal(&path);
            let outcome = if refusal.is_none() { "sent" } else { "fenced" };
            self.metrics
                .api_writes
                .with_label_values(&[method.as_str(), outcome])
                .inc();
            tracing::debug!(%method, %path, outcome, "API write");
            if let Some(reason) = refusal {
                return Either::Right(ready(Err(Fenced {
                    method,
                    path,
                    reason,
                }
                .into())));
            }
        }
        let into: fn(S::Error) -> BoxError = Into::into;
        Either::Left(self.inner.call(request).map_err(into))
    }
}

/// Whether a request changes state on the server.
fn mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Response;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ObjectMeta, PostParams};
    use tower_test::mock;

    use super::*;

    #[test]
    fn a_term_ends_by_the_monotonic_clock_and_when_closed() {
        let fence = WriteFence::closed();
        assert!(!fence.allows_writes(), "closed until a term is granted");
        fence.extend_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.allows_writes());
        let clone = fence.clone();
        clone.extend_until(Instant::now() - Duration::from_millis(1));
        assert!(!fence.allows_writes(), "clones share the term, which ended");
        fence.extend_until(Instant::now() + Duration::from_secs(60));
        fence.close();
        assert!(!clone.allows_writes());
        assert_eq!(fence.term_end(), None);

        let unfenced = WriteFence::unfenced();
        unfenced.close();
        assert!(unfenced.allows_writes(), "without election, always open");
    }

    #[test]
    fn writes_are_fenced_in_namespaces_another_shard_claims() {
        use crate::runtime::shards::{Shard, Survey, Term, Territory, owner};
        assert_eq!(
            path_namespace("/api/v1/namespaces/telco/configmaps/a"),
            Some("telco")
        );
        assert_eq!(
            path_namespace("/apis/strata.dev/v1alpha1/namespaces/telco/stacks/edge/status"),
            Some("telco")
        );
        assert_eq!(path_namespace("/api/v1/namespaces/telco"), None);
        assert_eq!(
            path_namespace("/apis/rbac.authorization.k8s.io/v1/clusterroles/x"),
            None
        );

        let territory = Territory::new(Shard::new(0, 3).unwrap());
        let fence = WriteFence::unfenced().within(territory.clone());
        let moving = (0..1000)
            .map(|i| format!("tenant-{i}"))
            .find(|ns| owner(ns, 3) == 0 && owner(ns, 4) == 3)
            .unwrap();
        let path = format!("/api/v1/namespaces/{moving}/configmaps/a");
        assert_eq!(fence.refusal(&path), None);
        territory.survey(Survey {
            yield_to: vec![Term {
                shard: Shard::new(3, 4).unwrap(),
                acquired: "1".into(),
            }],
            wait_for: vec![],
        });
        assert!(fence.refusal(&path).unwrap().contains("another shard"));
        assert_eq!(
            fence
                .refusal("/api/v1/namespaces/other-ns/configmaps/a")
                .is_some(),
            owner("other-ns", 4) == 3
        );
    }

    #[test]
    fn only_mutating_methods_are_writes() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(mutating(&method), "{method}");
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!mutating(&method), "{method}");
        }
    }

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// A kube client over a mock API server, through the fence.
    fn fenced_client(
        fence: &WriteFence,
        metrics: &Metrics,
    ) -> (Client, mock::Handle<Request<Body>, Response<Body>>) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let service = FenceLayer::new(fence.clone(), metrics.clone()).layer(service);
        (Client::new(service, "default"), handle)
    }

    #[tokio::test]
    async fn a_client_writes_only_within_its_term_and_always_reads() {
        let fence = WriteFence::closed();
        let metrics = Metrics::new();
        let (client, mut server) = fenced_client(&fence, &metrics);
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let answer = |body: &ConfigMap| {
            Response::builder()
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap()
        };

        // Closed: refused locally; the server sees nothing.
        let error = api
            .create(&PostParams::default(), &config_map("a"))
            .await
            .expect_err("a write outside any term");
        assert!(
            error.to_string().contains("leader term has ended"),
            "{error}"
        );

        // A read goes through while closed.
        let read = tokio::spawn({
            let api = api.clone();
            async move { api.get("a").await }
        });
        let (request, respond) = server.next_request().await.expect("the read arrives");
        assert_eq!(
            (request.method(), request.uri().path()),
            (&Method::GET, "/api/v1/namespaces/default/configmaps/a")
        );
        respond.send_response(answer(&config_map("a")));
        read.await.unwrap().expect("the read succeeds");

        // Within a term: sent.
        fence.extend_until(Instant::now() + Duration::from_secs(60));
        let write = tokio::spawn({
            let api = api.clone();
            async move { api.create(&PostParams::default(), &config_map("b")).await }
        });
        let (request, respond) = server.next_request().await.expect("the write arrives");
        assert_eq!(request.method(), Method::POST);
        respond.send_response(answer(&config_map("b")));
        write.await.unwrap().expect("the write succeeds");

        // The term ran out by the clock: refused again.
        fence.extend_until(Instant::now());
        api.delete("b", &Default::default())
            .await
            .expect_err("a write after the term");

        let counted = |method: &str, outcome: &str| {
            metrics
                .api_writes
                .with_label_values(&[method, outcome])
                .get()
        };
        assert_eq!(
            (
                counted("POST", "fenced"),
                counted("POST", "sent"),
                counted("DELETE", "fenced")
            ),
            (1, 1, 1)
        );
    }
}
