//! Another writer changes fields of a function's Deployment that Strata
//! manages: `kubectl scale` (an update of the scale subresource), `kubectl
//! set image` (an update) and a forced server-side apply by a field manager
//! of its own; then the selector of its Service (a JSON patch). Strata
//! restores each change once, says so in an Event, and neither loops (no
//! further writes once restored) nor causes conflicts (no 409 from the API
//! server for Deployments: Strata's applies are forced). (Its ConfigMaps are
//! immutable: another writer can only delete one, and a deleted child comes
//! back through the cache.)

use std::collections::BTreeMap;

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{DEADLINE, Fixture, pinned_image};
use strata_testkit::{client, kubectl, wait_for};

/// `apiserver_request_total` of Deployment requests (not their status)
/// answered 409 Conflict, from the API server's own metrics: every writer on
/// the plane, the Deployment controller's optimistic updates included.
async fn deployment_conflicts() -> f64 {
    let client = client().await;
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client
        .request_text(request)
        .await
        .expect("the API server's metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains(r#"code="409""#)
                && l.contains(r#"resource="deployments""#)
                && l.contains(r#"subresource="""#)
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// (replicas, image, the stack-version annotation of the pod template).
fn declared(d: &Deployment) -> (Option<i32>, Option<String>, Option<String>) {
    let template = &d.spec.template;
    let image = template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone());
    let version = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("strata.dev/stack-version").cloned());
    (d.spec.replicas, image, version)
}

/// A change another writer makes to the Deployment of `upf`.
enum Edit {
    /// `kubectl scale --replicas=5`: an update of the scale subresource.
    Scale,
    /// `kubectl set image`: an update by kubectl.
    SetImage,
    /// A forced server-side apply of a pod-template annotation by another manager.
    ForeignApply,
}

impl Edit {
    /// Makes the change; returns what it was.
    async fn perform(&self, t: &Fixture) -> &'static str {
        let ns = t.name();
        match self {
            Edit::Scale => {
                let out = kubectl(["-n", ns, "scale", "deployment/upf", "--replicas=5"]);
                assert!(out.status.success(), "{out:?}");
                "kubectl scale --replicas=5"
            }
            Edit::SetImage => {
                let image = "function=registry.example/evil:1";
                let out = kubectl(["-n", ns, "set", "image", "deployment/upf", image]);
                assert!(out.status.success(), "{out:?}");
                "kubectl set image"
            }
            Edit::ForeignApply => {
                let patch = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "upf"},
                    "spec": {"template": {"metadata": {"annotations": {
                        "strata.dev/stack-version": "9.9.9"
                    }}}}
                });
                t.deployments
                    .patch(
                        "upf",
                        &PatchParams::apply("intruder").force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .expect("the intruder's apply");
                "a forced server-side apply by another field manager"
            }
        }
    }
}

#[tokio::test]
async fn another_writer_is_overruled_without_loops_or_conflicts() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("conflicts").await;
    t.apply_stack("edge", "1.0.0", json!({})).await;
    t.stack_ready("edge", "1.0.0").await;
    let image = pinned_image("upf");
    t.apply_function(
        "upf",
        json!({
            "version": "2.3.1",
            "image": image,
            "stackRef": {"name": "edge"},
            "replicas": 2,
            "ports": [{"name": "gtpu", "port": 2152, "protocol": "UDP"}],
        }),
    )
    .await;
    t.function_ready_on("upf", "1.0.0").await;
    let want = (Some(2), Some(image.clone()), Some("1.0.0".to_string()));
    assert_eq!(declared(&t.deployment("upf").await.unwrap()), want);
    let conflicts_before = deployment_conflicts().await;

    let edits = [Edit::Scale, Edit::SetImage, Edit::ForeignApply];
    for (round, edit) in edits.iter().enumerate() {
        let what = edit.perform(&t).await;
        let restored = wait_for(DEADLINE, &format!("Strata to undo {what}"), || async {
            let d = t.deployment("upf").await.ok_or("no Deployment")?;
            if declared(&d) == want {
                Ok(d)
            } else {
                Err(format!("still {:?}", declared(&d)))
            }
        })
        .await;
        // The Event follows the restoring apply (a repeat bumps its series).
        wait_for(
            DEADLINE,
            &format!("a DriftCorrected Event for {what}"),
            || async {
                let corrections = t
                    .events_about("upf", "Normal", "DriftCorrected", |_| true)
                    .await;
                let count: i32 = corrections
                    .iter()
                    .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                    .sum();
                if count as usize > round {
                    Ok(())
                } else {
                    Err(format!("{count} DriftCorrected events"))
                }
            },
        )
        .await;
        // Strata owns what it declares again.
        let managers: Vec<String> = restored
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
            })
            .filter_map(|m| m.manager.clone())
            .collect();
        assert_eq!(
            managers,
            ["strata.dev/network-function"],
            "after {what}: managers of spec.replicas"
        );
    }

    // The Service's selector, replaced by another writer, selects the
    // function's pods again.
    let services: Api<Service> = t.ns.api();
    let selector = |s: &Service| -> BTreeMap<String, String> {
        s.spec
            .as_ref()
            .and_then(|spec| spec.selector.clone())
            .unwrap_or_default()
    };
    let declared_selector = selector(&services.get("upf").await.unwrap());
    assert!(!declared_selector.is_empty());
    let patch = r#"[{"op": "replace", "path": "/spec/selector", "value": {"app": "elsewhere"}}]"#;
    let out = kubectl([
        "-n",
        t.name(),
        "patch",
        "service/upf",
        "--type=json",
        "-p",
        patch,
    ]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        DEADLINE,
        "Strata to restore the Service's selector",
        || async {
            let now = selector(&services.get("upf").await.map_err(|e| e.to_string())?);
            if declared_selector.iter().all(|(k, v)| now.get(k) == Some(v)) {
                Ok(())
            } else {
                Err(format!("selector {now:?}"))
            }
        },
    )
    .await;
    t.events_about("upf", "Normal", "DriftCorrected", |note| {
        note.starts_with("Service upf:")
    })
    .await;

    // No loop: after a full resync more, the Deployment is as restored, and
    // Strata wrote it no more (its generation did not move).
    let settled = t.deployment("upf").await.unwrap();
    let addr = t.operator.metrics_addr().await;
    let reconciled = super::steady_state::reconciles(addr, "NetworkFunction", "success").unwrap();
    wait_for(DEADLINE, "two more reconciles of upf", || async {
        let now = super::steady_state::reconciles(addr, "NetworkFunction", "success")?;
        if now >= reconciled + 2 {
            Ok(())
        } else {
            Err(format!("{now} reconciles"))
        }
    })
    .await;
    let after = t.deployment("upf").await.unwrap();
    assert_eq!(after.metadata.generation, settled.metadata.generation);
    assert_eq!(declared(&after), want);
    // Strata's applies are forced: none of its reconciles failed (a 409
    // would fail one). A storm would be many conflicts on the plane; the
    // Deployment controller may lose a race or two with the edits.
    assert_eq!(
        super::steady_state::failed_reconciles(addr).unwrap(),
        Vec::<String>::new()
    );
    let conflicts = deployment_conflicts().await - conflicts_before;
    println!("409 Conflict answers to Deployment writes on the plane meanwhile: {conflicts}");
    assert!(
        conflicts <= edits.len() as f64,
        "{conflicts} conflicts for {} edits",
        edits.len()
    );
    let logs = t.operator.logs();
    let restores = |kind: &str| {
        logs.lines()
            .filter(|l| l.contains("restored fields of a child") && l.contains(kind))
            .count()
    };
    assert_eq!(
        (restores("child=Deployment/"), restores("child=Service/")),
        (edits.len(), 1),
        "one restore per foreign edit"
    );
    t.finish().await;
}
