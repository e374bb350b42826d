//! The krew manifest of the kubectl plugin installs the strata binary as
//! `kubectl-strata`, the name under which it answers `kubectl strata`.

use strata_testkit::repo_root;

#[test]
fn krew_manifest_installs_the_binary_as_kubectl_strata() {
    let path = repo_root().join("deploy/krew/strata.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: serde_json::Value = serde_yaml::from_str(&text).expect("the manifest is YAML");
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(
        manifest["metadata"]["name"], "strata",
        "installs as `kubectl strata`"
    );
    assert_eq!(
        manifest["spec"]["version"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    let arches: Vec<&str> = platforms
        .iter()
        .filter_map(|p| p["selector"]["matchLabels"]["arch"].as_str())
        .collect();
    assert_eq!(
        arches,
        ["amd64", "arm64"],
        "the architectures the Dockerfile builds"
    );
    for platform in platforms {
        assert_eq!(platform["bin"], "kubectl-strata");
        assert_eq!(platform["files"][0]["from"], "kubectl-strata");
        assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
    }
}
