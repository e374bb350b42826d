//! The gates against a mocked API server: what each reads, what it lets
//! through, and the conditions it leaves.

use std::ops::ControlFlow;

use http::Method;

use super::*;
use crate::{
    api::{Stack, function::Provenance},
    controllers::fixtures::{Answer, context, no_requests, object},
};

fn function(yaml_spec: &str) -> NetworkFunction {
    serde_yaml::from_str(&format!(
        "apiVersion: strata.dev/v1alpha1\nkind: NetworkFunction\n\
         metadata: {{name: upf, namespace: telco, uid: u1, generation: 2}}\n\
         spec: {{version: 2.3.1, image: 'upf@sha256:0', stackRef: {{name: edge-net, version: '^1.4'}}, {yaml_spec}}}"
    ))
    .unwrap()
}

fn stack(version: &str, ready: bool) -> Stack {
    serde_yaml::from_str(&format!(
        "apiVersion: strata.dev/v1alpha1\nkind: Stack\n\
         metadata: {{name: edge-net, namespace: telco, uid: s1, generation: 1}}\n\
         spec: {{version: {version}}}\n\
         status: {{observedGeneration: 1, version: {version}, digest: 'sha256:d{version}',\
         conditions: [{{type: Ready, status: '{}', reason: Applied, message: 'version {version} applied', lastTransitionTime: '2026-11-20T10:00:00Z'}}]}}",
        if ready { "True" } else { "False" }
    ))
    .unwrap()
}

fn condition<'a>(status: &'a NetworkFunctionStatus, type_: &str) -> (&'a str, &'a str) {
    let c = conditions::get(&status.conditions, type_).expect(type_);
    (c.status.as_str(), c.reason.as_str())
}

const STACK_PATH: &str = "/apis/strata.dev/v1alpha1/namespaces/telco/stacks/edge-net";

#[tokio::test]
async fn a_stack_the_cache_shows_not_ready_is_read_again_before_it_holds_the_function_back() {
    let live = stack("1.4.0", true);
    let (ctx, mut caches, requests) = context(super::super::State::default(), move |m, p| {
        assert_eq!((m, p), (&Method::GET, STACK_PATH));
        object(&live)
    });
    caches.stack(stack("1.4.0", false));
    let mut status = NetworkFunctionStatus::default();
    let flow = super::stack(&function("replicas: 1"), &ctx, "telco", &mut status)
        .await
        .unwrap();
    let ControlFlow::Continue(resolved) = flow else {
        panic!("the live Stack is Ready at 1.4.0: {flow:?}");
    };
    assert_eq!(
        (resolved.version.as_str(), resolved.digest.as_str()),
        ("1.4.0", "sha256:d1.4.0")
    );
    assert_eq!(requests.seen(), [format!("GET {STACK_PATH}")]);
}

#[tokio::test]
async fn a_ready_cached_stack_costs_no_request() {
    let (ctx, mut caches, requests) = context(super::super::State::default(), no_requests);
    caches.stack(stack("1.5.0", true));
    let mut status = NetworkFunctionStatus::default();
    let flow = super::stack(&function("replicas: 1"), &ctx, "telco", &mut status)
        .await
        .unwrap();
    assert!(matches!(flow, ControlFlow::Continue(_)), "{flow:?}");
    assert!(requests.seen().is_empty());
}

#[tokio::test]
async fn a_function_that_never_ran_waits_for_a_missing_stack_without_writing() {
    let (ctx, _caches, requests) = context(super::super::State::default(), |m, p| {
        assert_eq!((m, p), (&Method::GET, STACK_PATH), "only a read");
        Answer::NotFound
    });
    let mut status = NetworkFunctionStatus::default();
    let flow = super::stack(&function("replicas: 1"), &ctx, "telco", &mut status)
        .await
        .unwrap();
    let ControlFlow::Break(action) = flow else {
        panic!("the Stack does not exist: {flow:?}");
    };
    assert_eq!(action, Action::requeue(WAITING_RECHECK));
    assert_eq!(
        condition(&status, STACK_RESOLVED),
        ("False", "StackNotFound")
    );
    assert_eq!(
        condition(&status, conditions::RECONCILING),
        ("True", "StackNotFound")
    );
    assert_eq!(requests.seen().len(), 1);
}

#[tokio::test]
async fn a_stack_at_an_unsatisfying_version_holds_the_function_back() {
    let live = stack("2.0.0", true);
    let (ctx, mut caches, _) = context(super::super::State::default(), move |_, _| object(&live));
    caches.stack(stack("2.0.0", true));
    let mut status = NetworkFunctionStatus::default();
    let flow = super::stack(&function("replicas: 1"), &ctx, "telco", &mut status)
        .await
        .unwrap();
    assert!(matches!(flow, ControlFlow::Break(_)), "{flow:?}");
    assert_eq!(
        condition(&status, STACK_RESOLVED),
        ("False", "StackVersionMismatch")
    );
}

#[tokio::test]
async fn a_dependency_cycle_is_refused_before_any_request() {
    let (ctx, mut caches, _) = context(super::super::State::default(), no_requests);
    let a = function("dependsOn: [{name: smf, version: '*'}]");
    let mut b: NetworkFunction = function("dependsOn: [{name: upf, version: '*'}]");
    b.metadata.name = Some("smf".into());
    caches.function(a.clone());
    caches.function(b);
    let mut status = NetworkFunctionStatus::default();
    let error = dependencies(&a, &ctx, "telco", &mut status)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "DependencyCycle");
    assert!(error.to_string().contains("upf -> smf -> upf"), "{error}");
}

#[tokio::test]
async fn a_manual_function_stays_on_the_stack_revision_it_recorded() {
    let (ctx, mut caches, requests) = context(super::super::State::default(), no_requests);
    caches.stack(stack("1.5.0", true));
    let mut nf = function("replicas: 1");
    nf.spec.stack_ref.update_policy = UpdatePolicy::Manual;
    let mut status = NetworkFunctionStatus {
        observed_generation: Some(2),
        deployed_with: Some(Provenance {
            version: "2.3.1".into(),
            stack: crate::api::StackRevisionRef {
                name: "edge-net".into(),
                version: "1.4.0".into(),
                digest: "sha256:d1.4.0".into(),
            },
            record: "upf-1".into(),
            ready_at: Some("2026-11-20T10:00:00Z".into()),
            ..Provenance::default()
        }),
        ..NetworkFunctionStatus::default()
    };
    let ControlFlow::Continue(resolved) =
        super::stack(&nf, &ctx, "telco", &mut status).await.unwrap()
    else {
        panic!("the Stack resolves");
    };
    let flow = policy(&nf, &ctx, "telco", &mut status, &resolved)
        .await
        .unwrap();
    assert!(matches!(flow, ControlFlow::Break(_)), "{flow:?}");
    assert_eq!(condition(&status, STACK_RESOLVED), ("True", "HeldByPolicy"));
    assert_eq!(
        status.deployed_with.as_ref().unwrap().stack.version,
        "1.4.0",
        "nothing moved"
    );
    assert!(requests.seen().is_empty(), "{:?}", requests.seen());

    // A change of the function's own spec adopts the Stack.
    status.observed_generation = Some(1);
    let flow = policy(&nf, &ctx, "telco", &mut status, &resolved)
        .await
        .unwrap();
    assert!(matches!(flow, ControlFlow::Continue(())), "{flow:?}");
    assert_eq!(condition(&status, STACK_RESOLVED), ("True", "Resolved"));
}
