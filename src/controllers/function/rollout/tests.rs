//! What following a rollout reads: the Deployment is read before the
//! rollout concludes only when the cache is not known to show this
//! process's last write of it.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use kube::api::ObjectMeta;

use super::*;
use crate::controllers::{
    apply::{Live, apply_child},
    fixtures::{Answer, context, no_requests, object, upf},
};

const PATH: &str = "/apis/apps/v1/namespaces/ns/deployments/upf";

/// upf's Deployment at `generation`, which the Deployment controller has
/// seen: its two pods available, or none yet.
fn deployment(generation: i64, available: i32) -> Deployment {
    serde_yaml::from_str(&format!(
        "metadata: {{name: upf, namespace: ns, generation: {generation}, resourceVersion: '{generation}'}}\n\
         spec: {{replicas: 2, selector: {{}}, template: {{}}}}\n\
         status: {{observedGeneration: {generation}, replicas: 2, updatedReplicas: 2, availableReplicas: {available}}}"
    ))
    .unwrap()
}

/// Applies a Deployment for upf with `image`, as a rollout does.
async fn apply(ctx: &Context, image: &str) -> Result<crate::controllers::apply::ChildWrite> {
    let mut desired = deployment(1, 0);
    desired.status = None;
    desired.metadata.generation = None;
    desired.metadata.resource_version = None;
    desired.spec.template.metadata = Some(ObjectMeta {
        annotations: Some([("image".to_string(), image.to_string())].into()),
        ..ObjectMeta::default()
    });
    apply_child(ctx, "ns", MANAGER, desired, Live::Digested(None)).await
}

#[tokio::test]
async fn a_cache_at_the_generation_this_process_applied_concludes_without_a_read() {
    let (ctx, mut caches, requests) = context(super::super::State::default(), |m, _| match *m {
        Method::PATCH => object(&deployment(2, 0)),
        _ => panic!("unexpected {m}"),
    });
    apply(&ctx, "upf:2").await.unwrap();
    caches.deployment(deployment(2, 2));
    let (_, rollout) = deployment_rollout(&ctx, &upf(), "ns", true).await.unwrap();
    assert_eq!(rollout, Rollout::Complete);
    assert_eq!(requests.seen(), vec![format!("PATCH {PATH}")]);
}

#[tokio::test]
async fn a_cache_behind_this_process_s_apply_is_not_believed() {
    let (ctx, mut caches, requests) = context(super::super::State::default(), |m, _| match *m {
        Method::PATCH | Method::GET => object(&deployment(2, 0)),
        _ => panic!("unexpected {m}"),
    });
    apply(&ctx, "upf:2").await.unwrap();
    // The previous template, its rollout complete: the watch lags the apply.
    caches.deployment(deployment(1, 2));
    let (_, rollout) = deployment_rollout(&ctx, &upf(), "ns", true).await.unwrap();
    assert_eq!(
        rollout,
        Rollout::Progressing("0 of 2 pods available".into()),
        "what the API server holds"
    );
    assert_eq!(
        requests.seen(),
        vec![format!("PATCH {PATH}"), format!("GET {PATH}")]
    );
}

#[tokio::test]
async fn without_a_write_of_this_process_a_concluded_looking_cache_is_read() {
    // As after a restart: the rollout was started by the process before.
    let (ctx, mut caches, requests) = context(super::super::State::default(), |m, _| match *m {
        Method::GET => object(&deployment(1, 2)),
        _ => panic!("unexpected {m}"),
    });
    caches.deployment(deployment(1, 2));
    let (_, rollout) = deployment_rollout(&ctx, &upf(), "ns", true).await.unwrap();
    assert_eq!(rollout, Rollout::Complete);
    assert_eq!(requests.seen(), vec![format!("GET {PATH}")]);
}

#[tokio::test]
async fn a_write_left_without_an_answer_makes_the_cache_unproven() {
    let patches = AtomicUsize::new(0);
    let (ctx, mut caches, requests) =
        context(super::super::State::default(), move |m, _| match *m {
            // The first apply is answered; the second is not (it may or
            // may not have landed).
            Method::PATCH if patches.fetch_add(1, Ordering::SeqCst) == 0 => {
                object(&deployment(1, 0))
            }
            Method::PATCH => Answer::Conflict,
            Method::GET => object(&deployment(2, 0)),
            _ => panic!("unexpected {m}"),
        });
    apply(&ctx, "upf:1").await.unwrap();
    apply(&ctx, "upf:2").await.unwrap_err();
    caches.deployment(deployment(1, 2));
    let (_, rollout) = deployment_rollout(&ctx, &upf(), "ns", true).await.unwrap();
    assert_eq!(
        rollout,
        Rollout::Progressing("0 of 2 pods available".into())
    );
    assert_eq!(
        requests.seen(),
        vec![
            format!("PATCH {PATH}"),
            format!("PATCH {PATH}"),
            format!("GET {PATH}")
        ]
    );
}

#[tokio::test]
async fn a_rollout_not_concluding_reads_nothing() {
    let (ctx, mut caches, requests) = context(super::super::State::default(), no_requests);
    caches.deployment(deployment(1, 2));
    let (_, rollout) = deployment_rollout(&ctx, &upf(), "ns", false).await.unwrap();
    assert_eq!(rollout, Rollout::Complete);
    assert!(requests.seen().is_empty());
}
