//! Another cluster, reached as a promotion gate reaches an upstream
//! environment: a client made from the kubeconfig in a Secret
//! (`spec.promotion.requireVerifiedIn[].kubeConfig.secretRef`,
//! src/runtime/kubeconfig.rs), with the Secret on the shared plane and the
//! other cluster a dedicated plane of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::Kubeconfig;
use strata::api::record::FunctionRef;
use strata::api::{DeploymentRecord, DeploymentRecordSpec, StackRevisionRef};
use strata::runtime::kubeconfig::client_from_secret;
use strata_testkit::{DedicatedPlane, TestNamespace, client, install_crds, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

/// A Secret `name` holding `kubeconfig` under Flux's default key.
async fn kubeconfig_secret(ns: &TestNamespace, name: &str, kubeconfig: &str) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "value".to_string(),
            ByteString(kubeconfig.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("cannot create Secret {name}: {e}"));
}

/// The API server URL of a kubeconfig's (only) cluster.
fn server_of(kubeconfig: &str) -> String {
    Kubeconfig::from_yaml(kubeconfig)
        .expect("a kubeconfig")
        .clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("a server")
}

/// A record of a rollout that happened upstream only.
fn upstream_record(name: &str) -> DeploymentRecord {
    DeploymentRecord::new(
        name,
        DeploymentRecordSpec {
            network_function: FunctionRef {
                name: "upf".into(),
                uid: "0b7c1e9e-2f00-4d4a-9a57-3c1f0f0e7a11".into(),
            },
            version: "2.3.1".into(),
            image: format!(
                "registry.example/5gc/upf@sha256:{}",
                "0123456789abcdef".repeat(4)
            ),
            stack: StackRevisionRef {
                name: "edge-net".into(),
                version: "1.4.0".into(),
                digest: format!("sha256:{}", "fedcba9876543210".repeat(4)),
            },
            config_digest: format!("sha256:{}", "00112233445566778899aabbccddeeff".repeat(2)),
            previous_record: None,
            started_at: "2026-11-20T10:02:11Z".into(),
            verified_in: vec![],
        },
    )
}

/// The kubeconfig of a dedicated plane, put in a Secret on the shared
/// plane, gives a client for the dedicated plane: it lists the
/// DeploymentRecords there, and the recorded server is that plane's.
#[tokio::test]
async fn a_kubeconfig_secret_gives_a_client_for_another_cluster() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "remote-kubeconfig").await;
    let upstream = DedicatedPlane::up("remote-upstream").await;
    let upstream_client = upstream.client().await;
    install_crds(&upstream_client).await;
    let name = format!("upf-{}", ns.name());
    Api::<DeploymentRecord>::namespaced(upstream_client, "default")
        .create(&PostParams::default(), &upstream_record(&name))
        .await
        .expect("a DeploymentRecord upstream");

    let kubeconfig = upstream.kubeconfig_inline();
    kubeconfig_secret(&ns, "staging-kubeconfig", &kubeconfig).await;
    let remote = client_from_secret(&client, ns.name(), "staging-kubeconfig", "value")
        .await
        .unwrap_or_else(|e| panic!("no client for the upstream plane: {e}"));

    assert_eq!(remote.server, server_of(&kubeconfig));
    let shared = std::fs::read_to_string(strata_testkit::kubeconfig_path()).unwrap();
    assert_ne!(remote.server, server_of(&shared), "a server of its own");
    let records: Api<DeploymentRecord> = Api::namespaced(remote.client.clone(), "default");
    wait_for(DEADLINE, "the upstream record, listed remotely", || async {
        let listed = records
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<_> = listed
            .items
            .iter()
            .map(|r| r.metadata.name.clone())
            .collect();
        if names == [Some(name.clone())] {
            Ok(())
        } else {
            Err(format!("listed {names:?}"))
        }
    })
    .await;
    let here = Api::<DeploymentRecord>::namespaced(client.clone(), "default")
        .get_opt(&name)
        .await
        .expect("a get on the shared plane");
    assert!(here.is_none(), "the record exists upstream only");

    ns.cleanup().await;
}

/// A Secret whose kubeconfig runs a program for its credentials is refused,
/// and the error names the Secret and the reason, not its content.
#[tokio::test]
async fn an_exec_kubeconfig_secret_is_refused_without_its_content() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    let ns = TestNamespace::create(&client, "remote-exec").await;
    let token = "tok-41c7-never-shown";
    let program = "/tmp/strata-steal-never-shown";
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: staging
  cluster: {{server: \"https://staging.example:6443\"}}
users:
- name: ci
  user:
    token: {token}
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {program}
      args: [--token, {token}]
contexts:
- name: staging
  context: {{cluster: staging, user: ci}}
current-context: staging
"
    );
    kubeconfig_secret(&ns, "staging-kubeconfig", &kubeconfig).await;

    let error = client_from_secret(&client, ns.name(), "staging-kubeconfig", "")
        .await
        .expect_err("an exec kubeconfig is refused");
    let shown = format!("{error} {error:?}");
    for secret in [token, program, "never-shown"] {
        assert!(!shown.contains(secret), "the error shows {secret}: {shown}");
    }
    assert_eq!(
        error.to_string(),
        "secret staging-kubeconfig key value: users[0] runs a program (exec) for its \
         credentials, which the operator refuses: put a token or a client certificate and \
         key in the kubeconfig"
    );

    let error = client_from_secret(&client, ns.name(), "production-kubeconfig", "value")
        .await
        .expect_err("no such Secret");
    assert_eq!(
        error.to_string(),
        "secret production-kubeconfig key value: the Secret does not exist"
    );

    ns.cleanup().await;
}
