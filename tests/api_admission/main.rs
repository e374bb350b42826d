//! The API as a user meets it at `kubectl apply`, on the real API server with
//! the committed CRDs (no controllers needed): the examples are accepted
//! ([`examples`]), bad input is refused with the field path and message the
//! user sees ([`refusals`]), records are immutable, and `kubectl explain`
//! shows the field documentation; no Strata name shadows a served kind
//! ([`names`]).

mod examples;
mod names;
mod refusals;

use std::time::Duration;

use kube::api::Api;
use strata::api::DeploymentRecord;
use strata_testkit::{
    FIELD_MANAGER, OutputExt, TestNamespace, client, install_crds, kubectl, kubectl_with_stdin,
    wait_for,
};

/// Whether `output` has a line naming `path` (as a whole field path, not the
/// tail of a longer one) followed by `message`.
fn names_field_and_message(output: &str, path: &str, message: &str) -> bool {
    output.lines().any(|line| {
        line.match_indices(&format!("{path}: ")).any(|(at, _)| {
            let whole = at == 0 || line[..at].ends_with([' ', '*']);
            whole && line[at..].contains(message)
        })
    })
}

/// A DeploymentRecord as the operator writes it, at function version `version`.
fn record(version: &str) -> String {
    format!(
        r#"apiVersion: strata.dev/v1alpha1
kind: DeploymentRecord
metadata:
  name: upf-7f3c2a
  labels:
    strata.dev/network-function: upf
    strata.dev/stack: edge-net
    strata.dev/stack-version: 1.4.0
spec:
  networkFunction: {{name: upf, uid: 0b7c1e9e-2f00-4d4a-9a57-3c1f0f0e7a11}}
  version: {version}
  image: registry.example/5gc/upf@sha256:829fe5cb26b2412473a590edbdaad79b0a4148f9808bdbd0612f7174fd90fb1c
  stack: {{name: edge-net, version: 1.4.0, digest: "sha256:9f2c51b0e4d8a7c6f3e2d1c0b9a8f7e6d5c4b3a29180f7e6d5c4b3a291807f6e"}}
  configDigest: sha256:77aa0c5e4f3d2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2910f8e7d6c5
  startedAt: "2026-11-20T10:02:11Z"
"#
    )
}

/// `kubectl patch --type=merge` of the record of [`record`] in `ns`.
fn merge_patch_record(ns: &str, patch: &str) -> std::process::Output {
    kubectl([
        "patch",
        "-n",
        ns,
        "dr",
        "upf-7f3c2a",
        "--type=merge",
        "-p",
        patch,
    ])
}

/// A DeploymentRecord is a ledger entry: its spec cannot be changed, by
/// apply or by patch, while its metadata (labels) still can; its outcome,
/// once concluded, is final.
#[tokio::test]
async fn deployment_record_spec_is_immutable() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-record").await;
    let apply = [
        "apply",
        "--server-side",
        "--field-manager",
        FIELD_MANAGER,
        "-n",
        ns.name(),
        "-f",
        "-",
    ];

    kubectl_with_stdin(apply, &record("2.3.1")).expect_success("create a DeploymentRecord");
    // Applying the same content again is not a change.
    kubectl_with_stdin(apply, &record("2.3.1"))
        .expect_success("re-apply the same DeploymentRecord");

    let changed = kubectl_with_stdin(apply, &record("2.3.2"));
    assert!(
        !changed.status.success(),
        "spec.version of a record was changed:\n{}",
        changed.stdout_text()
    );
    let immutable = "spec is immutable: a DeploymentRecord is a ledger entry";
    assert!(
        names_field_and_message(&changed.stderr_text(), "spec", immutable),
        "{}",
        changed.stderr_text()
    );

    let patched = merge_patch_record(
        ns.name(),
        r#"{"spec":{"image":"registry.example/5gc/upf:evil"}}"#,
    );
    assert!(
        !patched.status.success(),
        "spec.image of a record was patched:\n{}",
        patched.stdout_text()
    );
    assert!(
        names_field_and_message(&patched.stderr_text(), "spec", immutable),
        "{}",
        patched.stderr_text()
    );

    kubectl([
        "label",
        "-n",
        ns.name(),
        "dr",
        "upf-7f3c2a",
        "audit.example/reviewed=true",
    ])
    .expect_success("label a record");

    let records: Api<DeploymentRecord> = ns.api();
    let stored = records.get("upf-7f3c2a").await.expect("the record");
    assert_eq!(stored.spec.version, "2.3.1");
    assert!(
        stored.spec.image.contains("@sha256:"),
        "{}",
        stored.spec.image
    );
    assert_eq!(
        stored
            .metadata
            .labels
            .unwrap_or_default()
            .get("audit.example/reviewed")
            .map(String::as_str),
        Some("true")
    );

    // Its outcome moves on from Progressing once, and then only from
    // Succeeded to Superseded.
    let outcome = |outcome: &str| {
        merge_patch_record(
            ns.name(),
            &format!(r#"{{"status":{{"outcome":"{outcome}"}}}}"#),
        )
    };
    outcome("Progressing").expect_success("a record created without status is Progressing");
    outcome("Succeeded").expect_success("conclude a record");
    let final_ = "status.outcome is final once concluded: only Succeeded may become Superseded";
    for rewritten in ["Failed", "Progressing"] {
        let refused = outcome(rewritten);
        assert!(
            !refused.status.success(),
            "a Succeeded record became {rewritten}:\n{}",
            refused.stdout_text()
        );
        assert!(
            names_field_and_message(&refused.stderr_text(), "status", final_),
            "{}",
            refused.stderr_text()
        );
    }
    outcome("Superseded").expect_success("a later rollout supersedes a Succeeded one");
    let refused = outcome("Succeeded");
    assert!(
        !refused.status.success(),
        "a Superseded record became Succeeded"
    );
    assert_eq!(
        records
            .get("upf-7f3c2a")
            .await
            .expect("the record")
            .status
            .map(|s| s.outcome),
        Some(strata::api::Outcome::Superseded)
    );

    ns.cleanup().await;
}

/// `kubectl explain` shows the field documentation from the Rust doc comments.
#[tokio::test]
async fn kubectl_explain_shows_field_documentation() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;

    // The API server publishes a new CRD's OpenAPI shortly after it is Established.
    let explained = wait_for(
        Duration::from_secs(30),
        "kubectl explain networkfunction.spec.stackRef",
        || async {
            let output = kubectl(["explain", "networkfunction.spec.stackRef"]);
            let text = format!("{}{}", output.stdout_text(), output.stderr_text());
            if output.status.success() && text.contains("The Stack versions this function accepts")
            {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    for phrase in [
        "KIND:       NetworkFunction",
        "The Stack this function is deployed onto.",
        "Name of a Stack in the function's namespace.",
        r#"">=1.4, <2", "^1.4", or "=1.4.0" to pin. Default "*"."#,
        "enum: Automatic, Manual",
        "Manual stays on the recorded Stack version until the",
    ] {
        assert!(
            explained.contains(phrase),
            "`kubectl explain networkfunction.spec.stackRef` lacks {phrase:?}:\n{explained}"
        );
    }

    let short = kubectl(["explain", "stk.spec.consumerRollout.maxConcurrent"])
        .expect_success("kubectl explain by short name");
    assert!(short.contains("a percentage of the consumers"), "{short}");
}
