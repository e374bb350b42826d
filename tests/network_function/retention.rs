//! `STRATA_RECORD_RETENTION`: a function keeps its newest records, the one
//! of the rollout it runs always among them, also across a restart of the
//! operator (which no longer knows how many records there are).

use kube::ResourceExt;
use serde_json::json;
use strata_testkit::Operator;

use super::{Fixture, pinned_image};

const RETENTION: usize = 3;

#[tokio::test]
async fn records_beyond_the_retention_are_pruned_oldest_first() {
    if !strata_testkit::plane_available() {
        return;
    }
    let env = [("STRATA_RECORD_RETENTION", "3")];
    let mut t = Fixture::start_with("nf-retention", &env).await;
    t.apply_stack("core", "1.0.0", json!({})).await;
    let mut current = Vec::new();
    for i in 0..6 {
        if i == 3 {
            // A new process: it counts the records again before pruning.
            t.operator.kill();
            t.operator = Operator::start_with(t.name(), &env);
        }
        let spec = json!({
            "version": "1.0.0",
            "image": pinned_image("upf"),
            "stackRef": {"name": "core"},
            "config": {"upf.yaml": format!("revision: {i}")},
        });
        t.apply_function("upf", spec).await;
        let ready = t
            .function_until("upf", &format!("revision {i} Ready"), |nf| {
                super::ready_on(nf, "1.0.0")
                    && nf
                        .status
                        .as_ref()
                        .is_some_and(|s| s.history.len() == i.min(10))
            })
            .await;
        current.push(ready.status.unwrap().deployed_with.unwrap().record);
    }
    let kept: Vec<String> = t
        .records_of("upf")
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        kept,
        current[current.len() - RETENTION..],
        "the newest {RETENTION} records, oldest first"
    );
    t.finish().await;
}
