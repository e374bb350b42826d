//! Controllers against a mocked API server, for fast tests of what a gate
//! reads and writes (as kube-rs's controller-rs tests its reconciler): the
//! caches are filled by hand, and every request must be one the test
//! expects.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Client, Resource,
    client::Body,
    runtime::{reflector, watcher},
};
use serde::Serialize;
use tower_test::mock;

use super::{Context, Shared, Stores, function::DeploymentState, relations::Relations};
use crate::{
    api::{NetworkFunction, ServiceChain, Stack},
    runtime::{fence::WriteFence, metrics::Metrics, settings::Settings},
};

/// An answer of the mock API server to one request.
pub(crate) enum Answer {
    /// 200 with this object.
    Object(serde_json::Value),
    /// 404 Not Found.
    NotFound,
    /// 409 Conflict: the object changed since it was read.
    Conflict,
    /// 422 Unprocessable Entity: a JSON patch's test failed.
    Invalid,
}

/// The requests the mock API server was sent: method and path.
#[derive(Clone, Default)]
pub(crate) struct Requests(Arc<Mutex<Vec<(Method, String)>>>);

impl Requests {
    /// Every request so far, as `"GET /api/..."`.
    pub(crate) fn seen(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect()
    }
}

/// The writers of the caches a test fills.
pub(crate) struct Caches {
    stacks: reflector::store::Writer<Stack>,
    functions: reflector::store::Writer<NetworkFunction>,
    deployments: reflector::store::Writer<DeploymentState>,
    relations: Arc<Relations>,
}

impl Caches {
    /// Puts `stack` in the Stack cache.
    pub(crate) fn stack(&mut self, stack: Stack) {
        self.stacks
            .apply_watcher_event(&watcher::Event::Apply(stack));
    }

    /// Puts `deployment` in the Deployment cache (as the controllers keep it).
    pub(crate) fn deployment(&mut self, deployment: Deployment) {
        self.deployments
            .apply_watcher_event(&watcher::Event::Apply(deployment.into()));
    }

    /// Puts `nf` in the NetworkFunction cache and the relations index.
    pub(crate) fn function(&mut self, nf: NetworkFunction) {
        self.relations.function_applied(&nf);
        self.functions
            .apply_watcher_event(&watcher::Event::Apply(nf));
    }
}

/// A controller context with `state` whose client talks to a mock API
/// server answering each request with `answer` (which panics on a request
/// the test does not expect), its caches empty until the test fills them.
pub(crate) fn context<S>(
    state: S,
    answer: impl Fn(&Method, &str) -> Answer + Send + 'static,
) -> (Arc<Context<S>>, Caches, Requests) {
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let requests = Requests::default();
    let log = requests.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = server.next_request().await {
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            log.0.lock().unwrap().push((method.clone(), path.clone()));
            let response = match answer(&method, &path) {
                Answer::Object(object) => json_response(StatusCode::OK, &object),
                Answer::NotFound => failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{path} not found"),
                ),
                Answer::Conflict => failure(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("{path}: the object has been modified"),
                ),
                Answer::Invalid => failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("{path}: the test operation failed"),
                ),
            };
            respond.send_response(response);
        }
    });
    let client = Client::new(service, "default");
    let (stacks, stack_writer) = reflector::store();
    let (functions, function_writer) = reflector::store();
    let (chains, _) = reflector::store::<ServiceChain>();
    let (deployments, deployment_writer) = reflector::store();
    let stores = Stores {
        stacks,
        functions,
        chains,
        deployments,
        services: reflector::store().0,
        config_maps: reflector::store().0,
    };
    let relations = Arc::new(Relations::default());
    let shared = Shared {
        client,
        config: kube::Config::new("http://127.0.0.1:1".parse().unwrap()),
        fence: WriteFence::unfenced(),
        metrics: Metrics::new(),
        settings: Settings::default(),
        stores,
        relations: relations.clone(),
    };
    let caches = Caches {
        stacks: stack_writer,
        functions: function_writer,
        deployments: deployment_writer,
        relations,
    };
    (Arc::new(Context::new(shared, state)), caches, requests)
}

/// The API server's answer of a refused request: a `Status` with `reason`.
fn failure(status: StatusCode, reason: &str, message: String) -> Response<Body> {
    json_response(
        status,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "code": status.as_u16(), "message": message,
        }),
    )
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap()));
    *response.status_mut() = status;
    response
}

/// Function upf in namespace ns (uid u1, generation 1) on stack edge-net.
pub(crate) fn upf() -> NetworkFunction {
    serde_yaml::from_str(
        "apiVersion: strata.dev/v1alpha1\nkind: NetworkFunction\n\
         metadata: {name: upf, namespace: ns, uid: u1, generation: 1}\n\
         spec: {version: 1.0.0, image: 'upf@sha256:0', stackRef: {name: edge-net, version: '^1'}}",
    )
    .unwrap()
}

/// A mock API server that expects no request at all.
pub(crate) fn no_requests(method: &Method, path: &str) -> Answer {
    panic!("unexpected request {method} {path}")
}

/// `obj` as JSON, for an [`Answer::Object`].
pub(crate) fn object<K: Resource + Serialize>(obj: &K) -> Answer {
    Answer::Object(serde_json::to_value(obj).unwrap())
}
