//! The examples under `examples/` are accepted as they are, and tell a
//! consistent story before and after the upgrade step.

use std::path::{Path, PathBuf};

use kube::api::Api;
use semver::{Version, VersionReq};
use strata::api::function::UpdatePolicy;
use strata::api::{NetworkFunction, ServiceChain, Stack};

use crate::record;
use strata_testkit::{
    FIELD_MANAGER, OutputExt, TestNamespace, client, install_crds, kubectl, kubectl_with_stdin,
    repo_root,
};

/// The files `kubectl apply -f examples/` applies (not recursive), in order.
fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

fn upgrade_file() -> PathBuf {
    repo_root().join("examples/upgrade/edge-net-1.5.0.yaml")
}

/// The one object of an example file, typed.
fn read_example<K: serde::de::DeserializeOwned>(path: &Path) -> K {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse as its kind: {e}", path.display()))
}

fn read_kind(path: &Path) -> (String, serde_yaml::Value) {
    let value: serde_yaml::Value = read_example(path);
    let kind = value["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no kind", path.display()))
        .to_string();
    (kind, value)
}

/// Every example file is accepted by the API server as it is, into any
/// namespace (they name none but the Namespace itself), and the upgrade step
/// too; afterwards `kubectl get strata` lists all four kinds.
#[tokio::test]
async fn examples_are_accepted_and_listed_by_category() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-examples").await;

    let files = example_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() >= 7,
        "expected the namespace, stack, four functions and a chain: {names:?}"
    );
    assert_eq!(
        names[0], "00-namespace.yaml",
        "the namespace comes first in apply order: {names:?}"
    );

    for (path, name) in files.iter().zip(&names) {
        let (kind, object) = read_kind(path);
        let file = path.to_str().expect("a UTF-8 path");
        if kind == "Namespace" {
            // Creating `telco` would leak out of this test's namespace: a
            // server-side dry run proves the API server accepts it.
            assert_eq!(object["metadata"]["name"].as_str(), Some("telco"), "{name}");
            kubectl([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager",
                FIELD_MANAGER,
                "-f",
                file,
            ])
            .expect_success(&format!("kubectl apply --dry-run=server -f {name}"));
            continue;
        }
        assert!(
            object["metadata"].get("namespace").is_none(),
            "{name} sets metadata.namespace; examples leave it out so that `kubectl apply -n telco -f examples/` works"
        );
        kubectl([
            "apply",
            "--server-side",
            "--field-manager",
            FIELD_MANAGER,
            "-n",
            ns.name(),
            "-f",
            file,
        ])
        .expect_success(&format!("kubectl apply -f examples/{name}"));
    }

    let stacks: Api<Stack> = ns.api();
    let edge_net = stacks
        .get("edge-net")
        .await
        .expect("Stack edge-net was created");
    assert_eq!(edge_net.spec.version, "1.4.0");
    let functions: Api<NetworkFunction> = ns.api();
    let mut nf_names: Vec<String> = functions
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|f| f.metadata.name.clone().unwrap())
        .collect();
    nf_names.sort();
    assert_eq!(nf_names, ["cgnat", "fw", "smf", "upf"]);

    // The upgrade step is accepted as a change of the same Stack.
    let upgrade = upgrade_file();
    kubectl([
        "apply",
        "--server-side",
        "--field-manager",
        FIELD_MANAGER,
        "-n",
        ns.name(),
        "-f",
        upgrade.to_str().unwrap(),
    ])
    .expect_success("kubectl apply -f examples/upgrade/edge-net-1.5.0.yaml");
    let edge_net = stacks.get("edge-net").await.expect("Stack edge-net");
    assert_eq!(edge_net.spec.version, "1.5.0");
    assert_eq!(
        edge_net.spec.parameters.get("mtu").map(String::as_str),
        Some("9000")
    );

    // A record as the operator writes it, so that the category shows all four kinds.
    kubectl_with_stdin(
        [
            "apply",
            "--server-side",
            "--field-manager",
            FIELD_MANAGER,
            "-n",
            ns.name(),
            "-f",
            "-",
        ],
        &record("2.3.1"),
    )
    .expect_success("apply a DeploymentRecord");

    let listing = kubectl(["get", "strata", "-n", ns.name()]).expect_success("kubectl get strata");
    for object in [
        "stack.strata.dev/edge-net",
        "networkfunction.strata.dev/smf",
        "networkfunction.strata.dev/upf",
        "networkfunction.strata.dev/fw",
        "networkfunction.strata.dev/cgnat",
        "servicechain.strata.dev/n6-egress",
        "deploymentrecord.strata.dev/upf-7f3c2a",
    ] {
        assert!(
            listing.lines().any(|l| l.starts_with(object)),
            "`kubectl get strata` does not list {object}:\n{listing}"
        );
    }
    for column in [
        "READY",
        "VERSION",
        "AGE",
        "STACK-VERSION",
        "HOPS",
        "OUTCOME",
    ] {
        assert!(
            listing.contains(column),
            "`kubectl get strata` has no {column} column:\n{listing}"
        );
    }

    ns.cleanup().await;
}

/// The demo's story holds together: every function runs on edge-net both at
/// 1.4.0 and after the upgrade to 1.5.0, dependencies and chain hops name
/// functions of the examples at satisfying versions, and the images are
/// pinned by digest except the one that shows the unpinned warning.
#[test]
fn examples_tell_a_consistent_upgrade_story() {
    let mut stacks = Vec::new();
    let mut functions = Vec::new();
    let mut chains = Vec::new();
    for path in example_files() {
        match read_kind(&path).0.as_str() {
            "Stack" => stacks.push(read_example::<Stack>(&path)),
            "NetworkFunction" => functions.push(read_example::<NetworkFunction>(&path)),
            "ServiceChain" => chains.push(read_example::<ServiceChain>(&path)),
            "Namespace" => {}
            other => panic!("unexpected kind {other} in {}", path.display()),
        }
    }
    assert_eq!(stacks.len(), 1, "one Stack in examples/");
    let before = &stacks[0];
    let after: Stack = read_example(&upgrade_file());

    // The upgrade is the same stack with a new version and other parameters.
    assert_eq!(before.metadata.name.as_deref(), Some("edge-net"));
    assert_eq!(after.metadata.name, before.metadata.name);
    let (v_before, v_after) = (
        Version::parse(&before.spec.version).unwrap(),
        Version::parse(&after.spec.version).unwrap(),
    );
    assert_eq!(
        (v_before.to_string().as_str(), v_after.to_string().as_str()),
        ("1.4.0", "1.5.0")
    );
    assert_ne!(
        after.spec.parameters, before.spec.parameters,
        "1.5.0 must change a parameter"
    );
    let same = |s: &Stack| {
        (
            s.spec.resources.clone(),
            s.spec.outputs.clone(),
            s.spec.consumer_rollout.clone(),
            s.spec.prune,
        )
    };
    assert_eq!(
        same(&after),
        same(before),
        "1.5.0 differs from 1.4.0 only in version and parameters"
    );
    let rollout = before
        .spec
        .consumer_rollout
        .as_ref()
        .expect("edge-net stages its consumers");
    assert_eq!(
        serde_json::to_value(&rollout.max_concurrent).unwrap(),
        "50%"
    );

    let version_of = |name: &str| -> Version {
        let f = functions
            .iter()
            .find(|f| f.metadata.name.as_deref() == Some(name));
        Version::parse(
            &f.unwrap_or_else(|| panic!("no NetworkFunction {name} in examples/"))
                .spec
                .version,
        )
        .unwrap()
    };
    for f in &functions {
        let name = f.metadata.name.as_deref().unwrap();
        assert_eq!(f.spec.stack_ref.name, "edge-net", "{name}");
        let wanted = VersionReq::parse(&f.spec.stack_ref.version).unwrap();
        for v in [&v_before, &v_after] {
            assert!(
                wanted.matches(v),
                "{name} requires edge-net {wanted}, which {v} does not satisfy"
            );
        }
        for dependency in &f.spec.depends_on {
            let wanted = VersionReq::parse(&dependency.version).unwrap();
            let have = version_of(&dependency.name);
            assert!(
                wanted.matches(&have),
                "{name} depends on {} {wanted}, the example is {have}",
                dependency.name
            );
        }
    }
    let policies: Vec<UpdatePolicy> = functions
        .iter()
        .map(|f| f.spec.stack_ref.update_policy)
        .collect();
    assert!(
        policies.contains(&UpdatePolicy::Automatic) && policies.contains(&UpdatePolicy::Manual),
        "{policies:?}"
    );

    let chain = chains
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("n6-egress"))
        .expect("chain n6-egress");
    let order: Vec<&str> = chain
        .spec
        .hops
        .iter()
        .map(|h| h.network_function.as_str())
        .collect();
    assert_eq!(order, ["fw", "cgnat", "upf"]);
    for hop in &chain.spec.hops {
        let wanted = VersionReq::parse(&hop.version).unwrap();
        let have = version_of(&hop.network_function);
        assert!(
            wanted.matches(&have),
            "hop {} wants {} {wanted}, the example is {have}",
            hop.name,
            hop.network_function
        );
    }

    let digest = regex::Regex::new(r"^registry\.example/[a-z0-9/-]+@sha256:[0-9a-f]{64}$").unwrap();
    let unpinned: Vec<&str> = functions
        .iter()
        .filter(|f| !digest.is_match(&f.spec.image))
        .map(|f| f.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        unpinned,
        ["fw"],
        "every image but fw's is pinned by a sha256 digest"
    );
}
