//! `history` and `runs-on` over hundreds of DeploymentRecords, created
//! directly (no operator): read a page at a time, every record is there
//! once, newest first, whatever order their names sort in.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use serde_json::json;
use strata::api::DeploymentRecord;
use strata_testkit::{TestNamespace, client, install_crds};

use super::{json, shown, strata};

const RECORDS: usize = 300;

/// Record `i` of function upf: started `i` seconds after the first, linked
/// to record `i - 1`, named so that name order is not time order.
fn name(i: usize) -> String {
    format!("upf-{:06x}", (i * 7919) % 1_000_003)
}

fn record(i: usize) -> DeploymentRecord {
    let stack_version = if i < RECORDS / 2 { "1.4.0" } else { "1.5.0" };
    let started = k8s_openapi::jiff::Timestamp::from_second(1_795_000_000 + i as i64).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "DeploymentRecord",
        "metadata": {"name": name(i), "labels": {
            "strata.dev/network-function": "upf", "strata.dev/stack": "edge-net",
            "strata.dev/stack-version": stack_version}},
        "spec": {
            "networkFunction": {"name": "upf", "uid": "0b7c1e9e-2f00-4d4a-9a57-3c1f0f0e7a11"},
            "version": format!("2.{}.0", i / 100),
            "image": format!("registry.example/upf@sha256:{}", "0123456789abcdef".repeat(4)),
            "stack": {"name": "edge-net", "version": stack_version, "digest": format!("sha256:{}", "9f2c".repeat(16))},
            "configDigest": format!("sha256:{}", "77aa".repeat(16)),
            "previousRecord": (i > 0).then(|| name(i - 1)),
            "startedAt": started.to_string(),
        },
    }))
    .expect("a valid DeploymentRecord")
}

#[tokio::test]
async fn history_pages_through_hundreds_of_records() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "cli-history").await;
    let n = ns.name().to_string();
    let records: Api<DeploymentRecord> = ns.api();
    let started = Instant::now();
    futures::stream::iter(0..RECORDS)
        .map(|i| {
            let records = records.clone();
            async move { records.create(&PostParams::default(), &record(i)).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("records are created");
    eprintln!("{RECORDS} records created in {:.1?}", started.elapsed());

    let all = strata([
        "history",
        "nf",
        "upf",
        "-n",
        &n,
        "--chunk-size",
        "40",
        "-o",
        "json",
    ]);
    assert!(all.status.success(), "{}", shown(&all));
    let doc = json(&all);
    let names: Vec<&str> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let newest_first: Vec<String> = (0..RECORDS).rev().map(name).collect();
    assert_eq!(names, newest_first, "every record once, newest first");
    assert_eq!(doc["records"][0]["previousRecord"], name(RECORDS - 2));
    assert_eq!(doc["records"][0]["outcome"], "Progressing");

    let newest = json(&strata([
        "history",
        "nf",
        "upf",
        "-n",
        &n,
        "--limit",
        "5",
        "--chunk-size",
        "64",
        "-o",
        "json",
    ]));
    let names: Vec<&str> = newest["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, newest_first[..5]);

    let table = strata(["history", "nf", "upf", "-n", &n]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        text.lines().count(),
        RECORDS + 1,
        "a header and one line per record:\n{}",
        shown(&table)
    );
    assert!(
        text.lines().nth(1).unwrap().starts_with(&name(RECORDS - 1)),
        "{text}"
    );

    let runs_on = json(&strata([
        "runs-on",
        "edge-net",
        "--version",
        "1.4.0",
        "-n",
        &n,
        "--chunk-size",
        "25",
        "-o",
        "json",
    ]));
    let before: Vec<(&str, u64)> = runs_on["before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap(),
                r["rollouts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(before, [("2.1.0", 50), ("2.0.0", 100)], "{runs_on}");
    assert_eq!(runs_on["before"][0]["lastRecord"], name(RECORDS / 2 - 1));
    let deadline = Duration::from_secs(60);
    assert!(started.elapsed() < deadline, "took {:?}", started.elapsed());
    ns.cleanup().await;
}
