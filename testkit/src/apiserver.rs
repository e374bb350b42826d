//! What the API server counts on its own `/metrics`: the requests it served
//! by resource and verb (`apiserver_request_total`) and the watch events it
//! sent (`apiserver_watch_events_total`, and their bytes). Every client of
//! the plane is in these counts (kube-apiserver labels no user or
//! namespace): read them before and after a window in which nothing else
//! runs, and take the difference ([`ApiServerCounters::since`]).

use std::collections::{BTreeMap, HashMap};

use kube::Client;

/// Request counts by (resource, verb). A resource is named
/// `resource.group/subresource` (`deployments.apps/status`, `pods/binding`,
/// `services`); a request for no resource by its path (`/readyz`).
pub type RequestCounts = BTreeMap<(String, String), f64>;

/// The verbs of mutating requests as the API server labels them: a
/// server-side apply is APPLY, not PATCH.
const WRITE_VERBS: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Reads (a watch is counted by the events it sends).
const READ_VERBS: &[&str] = &["GET", "LIST"];

/// The API server's counters at one moment, or their growth over a window.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct ApiServerCounters {
    /// `apiserver_request_total` by (resource, verb), without dry runs.
    pub requests: RequestCounts,
    /// Of those, the requests answered with an error (code 400 or above):
    /// conflicts, invalid objects, throttling.
    pub refused: RequestCounts,
    /// Dry runs (`dryRun=All`: mutating requests that change nothing), by
    /// (resource, verb).
    pub dry_runs: RequestCounts,
    /// `apiserver_watch_events_total` by resource (`deployments.apps`):
    /// events sent, one for each watcher an event reaches.
    pub watch_events: BTreeMap<String, f64>,
    /// `apiserver_watch_events_sizes_sum` by resource: those events' bytes.
    pub watch_event_bytes: BTreeMap<String, f64>,
    /// `apiserver_request_duration_seconds_sum` by (resource, verb), without
    /// dry runs and watches: the seconds the API server took to answer
    /// (its queueing and etcd's time in it), summed over the requests.
    pub request_seconds: RequestCounts,
    /// `apiserver_init_events_total` by resource: of the events sent, those
    /// that list the existing objects to a new watch (served by the watch
    /// cache), rather than tell of a change. A component that restarts a
    /// watch (an informer's periodic re-watch) sends them at any time.
    pub watch_initial_events: BTreeMap<String, f64>,
}

/// Reads the API server's `/metrics` through `client` (the plane's admin
/// kubeconfig may). Panics when it does not answer.
pub async fn apiserver_counters(client: &Client) -> ApiServerCounters {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a GET request");
    let text = client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("the API server's /metrics: {e}"));
    ApiServerCounters::parse(&text)
}

impl ApiServerCounters {
    /// The counters in a Prometheus text exposition of kube-apiserver.
    pub fn parse(exposition: &str) -> Self {
        let mut counters = Self::default();
        for line in exposition.lines() {
            let Some((name, rest)) = line.split_once('{') else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let labels = parse_labels(labels);
            let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            let mut resource = label("resource").to_string();
            if !label("group").is_empty() {
                resource = format!("{resource}.{}", label("group"));
            }
            // A request for no resource (`/readyz`, `/openapi/v3`) has its
            // path as the subresource, with or without the `/`.
            let request = |resource: String| {
                let resource = if resource.is_empty() {
                    format!("/{}", label("subresource").trim_start_matches('/'))
                } else if !label("subresource").is_empty() {
                    format!("{resource}/{}", label("subresource"))
                } else {
                    resource
                };
                (resource, label("verb").to_string())
            };
            match name {
                "apiserver_request_duration_seconds_sum"
                    if label("dry_run").is_empty()
                        && !matches!(label("verb"), "WATCH" | "CONNECT") =>
                {
                    *counters
                        .request_seconds
                        .entry(request(resource))
                        .or_default() += value;
                }
                "apiserver_request_total" => {
                    let key = request(resource);
                    if !label("dry_run").is_empty() {
                        *counters.dry_runs.entry(key).or_default() += value;
                        continue;
                    }
                    if label("code").parse::<u16>().is_ok_and(|code| code >= 400) {
                        *counters.refused.entry(key.clone()).or_default() += value;
                    }
                    *counters.requests.entry(key).or_default() += value;
                }
                "apiserver_watch_events_total" => {
                    *counters.watch_events.entry(resource).or_default() += value;
                }
                "apiserver_watch_events_sizes_sum" => {
                    *counters.watch_event_bytes.entry(resource).or_default() += value;
                }
                "apiserver_init_events_total" => {
                    *counters.watch_initial_events.entry(resource).or_default() += value;
                }
                _ => {}
            }
        }
        counters
    }

    /// What the counters grew by since `before` (only what grew).
    pub fn since(&self, before: &Self) -> Self {
        Self {
            requests: growth(&self.requests, &before.requests),
            refused: growth(&self.refused, &before.refused),
            dry_runs: growth(&self.dry_runs, &before.dry_runs),
            request_seconds: growth(&self.request_seconds, &before.request_seconds),
            watch_events: growth(&self.watch_events, &before.watch_events),
            watch_event_bytes: growth(&self.watch_event_bytes, &before.watch_event_bytes),
            watch_initial_events: growth(&self.watch_initial_events, &before.watch_initial_events),
        }
    }

    /// The mutating requests ([`WRITE_VERBS`]), by (resource, verb).
    pub fn writes(&self) -> RequestCounts {
        self.requests
            .iter()
            .filter(|((_, verb), _)| WRITE_VERBS.contains(&verb.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// All mutating requests.
    pub fn total_writes(&self) -> f64 {
        total(&self.requests, WRITE_VERBS)
    }

    /// The mutating requests answered with an error.
    pub fn total_refused_writes(&self) -> f64 {
        total(&self.refused, WRITE_VERBS)
    }

    /// All dry runs.
    pub fn total_dry_runs(&self) -> f64 {
        total(&self.dry_runs, WRITE_VERBS)
    }

    /// The GETs and LISTs of resources (not of paths such as `/readyz`),
    /// by (resource, verb).
    pub fn reads(&self) -> RequestCounts {
        self.requests
            .iter()
            .filter(|((resource, verb), _)| {
                !resource.starts_with('/') && READ_VERBS.contains(&verb.as_str())
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// All GETs and LISTs of resources.
    pub fn total_reads(&self) -> f64 {
        total(&self.reads(), READ_VERBS)
    }

    /// All watch events sent.
    pub fn total_watch_events(&self) -> f64 {
        self.watch_events.values().sum::<f64>() + 0.0
    }

    /// All initial events of new watches.
    pub fn total_watch_initial_events(&self) -> f64 {
        self.watch_initial_events.values().sum::<f64>() + 0.0
    }

    /// The bytes of all watch events sent.
    pub fn total_watch_event_bytes(&self) -> f64 {
        self.watch_event_bytes.values().sum::<f64>() + 0.0
    }
}

/// The sum of the counts of `verbs` (`+ 0.0`: an empty f64 sum is -0).
fn total(counts: &RequestCounts, verbs: &[&str]) -> f64 {
    counts
        .iter()
        .filter(|((_, verb), _)| verbs.contains(&verb.as_str()))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0
}

fn growth<K: Ord + Clone>(after: &BTreeMap<K, f64>, before: &BTreeMap<K, f64>) -> BTreeMap<K, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// `key="value",...` (values without quotes or commas, as the API server's are).
fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(
            key.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as kube-apiserver v1.37 writes them.
    const BEFORE: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 4
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 7
apiserver_watch_events_total{group="",resource="pods",version="v1"} 100
apiserver_watch_events_sizes_sum{group="",resource="pods",version="v1"} 50000
apiserver_init_events_total{group="",resource="pods"} 40
"#;

    const AFTER: &str = r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"} 30
apiserver_request_total{code="409",component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="All",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 10
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 8
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 3
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="openapi/v3",verb="GET",version=""} 2
apiserver_watch_events_total{group="",resource="pods",version="v1"} 130
apiserver_watch_events_total{group="apps",resource="deployments",version="v1"} 12
apiserver_watch_events_sizes_sum{group="",resource="pods",version="v1"} 80000
apiserver_watch_events_sizes_bucket{group="",resource="pods",version="v1",le="1024"} 3
apiserver_init_events_total{group="",resource="pods"} 60
apiserver_init_events_total{group="apps",resource="deployments"} 2
"#;

    fn key(resource: &str, verb: &str) -> (String, String) {
        (resource.to_string(), verb.to_string())
    }

    #[test]
    fn a_window_counts_what_grew_by_resource_and_verb_and_dry_runs_apart() {
        let window = ApiServerCounters::parse(AFTER).since(&ApiServerCounters::parse(BEFORE));
        assert_eq!(
            window.writes(),
            RequestCounts::from([
                (key("deployments.apps", "APPLY"), 22.0),
                (key("pods/binding", "POST"), 5.0),
                (key("pods/status", "PATCH"), 6.0),
            ])
        );
        assert_eq!(
            window.refused,
            RequestCounts::from([(key("deployments.apps", "APPLY"), 2.0)])
        );
        assert_eq!(
            (window.total_writes(), window.total_refused_writes()),
            (33.0, 2.0)
        );
        assert_eq!(
            window.dry_runs,
            RequestCounts::from([(key("deployments.apps", "APPLY"), 9.0)])
        );
        assert_eq!(window.requests[&key("/readyz", "GET")], 3.0);
        assert_eq!(window.requests[&key("/openapi/v3", "GET")], 2.0);
        assert_eq!(
            window.reads(),
            RequestCounts::from([(key("pods", "LIST"), 1.0)]),
            "/readyz and /openapi/v3 are no resources"
        );
        assert_eq!(window.total_reads(), 1.0);
        assert_eq!(
            window.watch_events,
            BTreeMap::from([
                ("deployments.apps".to_string(), 12.0),
                ("pods".to_string(), 30.0)
            ])
        );
        assert_eq!(window.total_watch_event_bytes(), 30000.0);
        assert_eq!(
            window.watch_initial_events,
            BTreeMap::from([
                ("deployments.apps".to_string(), 2.0),
                ("pods".to_string(), 20.0)
            ])
        );
    }

    #[test]
    fn request_seconds_are_summed_by_resource_and_verb_without_watches_or_dry_runs() {
        let at = |apply: f64, watch: f64| {
            format!(
                r#"apiserver_request_duration_seconds_sum{{component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"}} {apply}
apiserver_request_duration_seconds_sum{{component="apiserver",dry_run="All",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"}} 7
apiserver_request_duration_seconds_sum{{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"}} {watch}
apiserver_request_duration_seconds_sum{{component="apiserver",dry_run="",group="strata.dev",resource="networkfunctions",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"}} {apply}
apiserver_request_duration_seconds_count{{component="apiserver",dry_run="",group="apps",resource="deployments",scope="resource",subresource="",verb="APPLY",version="v1"}} 99
"#
            )
        };
        let window = ApiServerCounters::parse(&at(2.5, 600.0))
            .since(&ApiServerCounters::parse(&at(1.0, 60.0)));
        assert_eq!(
            window.request_seconds,
            RequestCounts::from([
                (key("deployments.apps", "APPLY"), 1.5),
                (key("networkfunctions.strata.dev/status", "APPLY"), 1.5),
            ])
        );
    }

    #[test]
    fn an_empty_window_is_zero_not_minus_zero() {
        let counters = ApiServerCounters::parse(AFTER);
        let window = counters.since(&counters);
        assert_eq!(window, ApiServerCounters::default());
        for total in [
            window.total_writes(),
            window.total_reads(),
            window.total_watch_events(),
            window.total_watch_initial_events(),
        ] {
            assert!(total == 0.0 && total.is_sign_positive(), "{total}");
        }
    }
}
