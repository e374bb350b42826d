//! DeploymentRecords read a page at a time (`limit` and `continue`, as
//! `kubectl get --chunk-size` reads), so a function with thousands of
//! records never asks the API server for all of them in one response, and
//! each page is reduced to what the command keeps before the next is read.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};

use super::Result;
use super::connect::{Cluster, Scope};
use crate::api::{DeploymentRecord, DeploymentRecordSpec, DeploymentRecordStatus};

/// Records per page unless `--chunk-size` says otherwise.
pub const DEFAULT_CHUNK: u32 = 100;

/// One DeploymentRecord as the commands read it: the typed spec and status.
pub struct RecordPage {
    /// The record's namespace.
    pub namespace: String,
    /// The record's name.
    pub name: String,
    /// Its spec.
    pub spec: DeploymentRecordSpec,
    /// Its status (default: Progressing).
    pub status: DeploymentRecordStatus,
}

/// Calls `visit` with every DeploymentRecord matching `selector` in the
/// cluster's scope, reading `chunk` at a time; returns the pages read.
pub async fn each_record(
    cluster: &Cluster,
    selector: &str,
    chunk: u32,
    mut visit: impl FnMut(RecordPage),
) -> Result<usize> {
    let resource = ApiResource::erase::<DeploymentRecord>(&());
    let api: Api<DynamicObject> = match &cluster.scope {
        Scope::Namespace(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
        Scope::All => Api::all_with(cluster.client.clone(), &resource),
    };
    let mut params = ListParams::default().labels(selector).limit(chunk.max(1));
    let mut pages = 0;
    loop {
        let page = api.list(&params).await?;
        pages += 1;
        page.items
            .into_iter()
            .filter_map(typed)
            .for_each(&mut visit);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(pages),
        }
    }
}

/// The typed view of a record; one whose spec does not parse is skipped.
fn typed(object: DynamicObject) -> Option<RecordPage> {
    let spec = object.data.get("spec")?;
    let status = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    Some(RecordPage {
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        spec: serde_json::from_value(spec.clone()).ok()?,
        status,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};
    use kube::{Client, client::Body};
    use serde_json::json;

    use super::*;

    fn record(name: &str) -> serde_json::Value {
        json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "DeploymentRecord",
            "metadata": {"name": name, "namespace": "telco"},
            "spec": {"networkFunction": {"name": "upf", "uid": "u1"}, "version": "2.3.1",
                     "image": "registry.example/upf@sha256:4b1e",
                     "stack": {"name": "edge-net", "version": "1.4.0", "digest": "sha256:9f2c"},
                     "configDigest": "sha256:77aa", "startedAt": "2026-11-20T10:02:11Z",
                     "verifiedIn": [{"cluster": "", "namespace": "staging", "record": "upf-1", "soaked": "30m0s"}]},
            "status": {"outcome": "Succeeded"},
        })
    }

    /// Two pages of two and one: the second request carries the first
    /// page's continue token, and no request asks for more than the chunk.
    #[tokio::test]
    async fn reads_records_a_page_at_a_time() {
        let (service, mut server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = queries.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = server.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_string();
                let (items, next) = if query.contains("continue=page-2") {
                    (vec![record("upf-c")], "")
                } else {
                    (vec![record("upf-a"), record("upf-b")], "page-2")
                };
                seen.lock().unwrap().push(query);
                let body = json!({"apiVersion": "strata.dev/v1alpha1", "kind": "DeploymentRecordList",
                                  "metadata": {"continue": next}, "items": items});
                respond.send_response(Response::new(Body::from(
                    serde_json::to_vec(&body).unwrap(),
                )));
            }
        });
        let cluster = Cluster {
            client: Client::new(service, "telco"),
            scope: Scope::Namespace("telco".into()),
        };
        let mut names = Vec::new();
        let pages = each_record(&cluster, "strata.dev/network-function=upf", 2, |r| {
            assert_eq!(r.spec.verified_in[0].record, "upf-1");
            names.push(r.name);
        })
        .await
        .unwrap();
        assert_eq!(
            (pages, names),
            (2, vec!["upf-a".into(), "upf-b".into(), "upf-c".into()])
        );
        let queries = queries.lock().unwrap();
        assert!(queries.iter().all(|q| q.contains("limit=2")), "{queries:?}");
        assert!(queries[1].contains("continue=page-2"), "{queries:?}");
    }
}
