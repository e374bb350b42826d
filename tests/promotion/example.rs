//! `examples/promotion/` as shipped, into two test namespaces (its
//! `staging` and `production` renamed) with the soak cut to seconds.

use serde_json::json;
use strata_testkit::{
    Operator, OutputExt, TestNamespace, client, install_crds, kubectl_with_stdin, repo_root,
};

use super::{Env, condition};

/// The example's files, `staging` and `production` renamed, the soak cut.
fn example(file: &str, staging: &str, production: &str) -> String {
    let path = repo_root().join("examples/promotion").join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .replace("namespace: staging", &format!("namespace: {staging}"))
        .replace("namespace: production", &format!("namespace: {production}"))
        .replace("soak: 20s", "soak: 2s")
}

fn apply(file: &str, staging: &str, production: &str) {
    kubectl_with_stdin(["apply", "-f", "-"], &example(file, staging, production))
        .expect_success(&format!("kubectl apply examples/promotion/{file}"));
}

#[tokio::test]
async fn the_example_promotes_staging_to_production() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let staging = Env::new(TestNamespace::create(&client, "example-staging").await);
    let production = Env::new(TestNamespace::create(&client, "example-production").await);
    let namespaces = format!("{},{}", staging.name(), production.name());
    let operator = Operator::start_with(staging.name(), &[("STRATA_NAMESPACES", &namespaces)]);
    let (s, p) = (staging.name().to_string(), production.name().to_string());
    assert!(example("20-production.yaml", &s, &p).contains("soak: 2s"));

    apply("10-staging.yaml", &s, &p);
    apply("20-production.yaml", &s, &p);
    staging.ready_on("smf", "1.0.0").await;
    let promoted = production.ready_on("smf", "1.0.0").await;
    assert_eq!(
        condition(&promoted, "Verified").map(|c| c.reason.as_str()),
        Some("VerifiedUpstream")
    );
    let record = production.current_record("smf").await;
    assert_eq!(record.spec.verified_in.len(), 1, "{:?}", record.spec);
    assert_eq!(record.spec.verified_in[0].namespace, s);

    apply("30-upgrade.yaml", &s, &p);
    staging.ready_on("smf", "1.1.0").await;
    production.ready_on("smf", "1.1.0").await;
    let record = production.current_record("smf").await;
    let evidence = &record.spec.verified_in[0];
    let staged = staging.current_record("smf").await;
    assert_eq!(
        json!([&evidence.namespace, &evidence.record]),
        json!([s, staged.metadata.name.unwrap()])
    );

    drop(operator);
    staging.ns.cleanup().await;
    production.ns.cleanup().await;
}
