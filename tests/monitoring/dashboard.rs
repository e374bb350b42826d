//! The Grafana dashboard (`deploy/monitoring/strata-dashboard.json`) holds
//! what Grafana needs to import it anywhere: a data source variable every
//! query goes through, unique panel ids, panels laid out on the 24-column
//! grid without overlapping, and only variables it defines. Grafana cannot
//! run here; whether each query returns data is the live test's part.

use std::collections::BTreeSet;

use serde_json::Value;
use strata_testkit::repo_root;

/// The dashboard's path in the repository.
pub const DASHBOARD: &str = "deploy/monitoring/strata-dashboard.json";

/// Variables Grafana itself defines.
const BUILTINS: [&str; 1] = ["__rate_interval"];

/// The dashboard, parsed.
pub fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo_root().join(DASHBOARD)).expect(DASHBOARD);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The panel's title and the query's refId, to name it in messages.
    pub what: String,
    /// The PromQL expression, with Grafana's variables in it.
    pub expr: String,
}

/// Every panel's queries.
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    panels(dashboard)
        .iter()
        .flat_map(|panel| {
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |target| PanelQuery {
                    what: format!("{} ({})", panel["title"], target["refId"]),
                    expr: target["expr"].as_str().unwrap_or_default().to_string(),
                })
        })
        .collect()
}

/// The queries of the query variables: (name, query).
pub fn variable_queries(dashboard: &Value) -> Vec<(String, String)> {
    variables(dashboard)
        .into_iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["query"]["query"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `expr` as Grafana sends it with `job` and `namespace` selected (every
/// stack), and a `$__rate_interval` of `rate_interval`.
pub fn instantiate(expr: &str, job: &str, namespace: &str, rate_interval: &str) -> String {
    expr.replace("$__rate_interval", rate_interval)
        .replace("$job", job)
        .replace("$namespace", namespace)
        .replace("$stack", ".*")
}

fn variables(dashboard: &Value) -> Vec<Value> {
    dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every panel, those in rows included (rows themselves are not panels
/// with queries).
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            all.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        } else {
            all.push(panel.clone());
        }
    }
    all
}

/// Every panel and row, with the ids and positions Grafana lays them out by.
fn laid_out(dashboard: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel.clone());
        all.extend(panel["panels"].as_array().cloned().unwrap_or_default());
    }
    all
}

#[test]
fn the_dashboard_is_importable_with_any_prometheus_data_source() {
    let dashboard = dashboard();
    for field in ["uid", "title"] {
        assert!(
            dashboard[field].as_str().is_some_and(|s| !s.is_empty()),
            "{DASHBOARD} has no {field}"
        );
    }
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{DASHBOARD}: schemaVersion {} (the per-query data source needs 36 or later)",
        dashboard["schemaVersion"]
    );
    let variables = variables(&dashboard);
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .unwrap_or_else(|| panic!("{DASHBOARD} has no data source variable"));
    assert_eq!(datasource["query"], "prometheus", "{datasource}");
    let reference = format!("${{{}}}", datasource["name"].as_str().unwrap());
    let uses_variable = |ds: &Value| ds["type"] == "prometheus" && ds["uid"] == reference.as_str();
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        assert!(
            uses_variable(&variable["datasource"]),
            "variable {} does not query {reference}: {}",
            variable["name"],
            variable["datasource"]
        );
    }
    for panel in panels(&dashboard) {
        assert!(
            uses_variable(&panel["datasource"]),
            "panel {} does not use {reference}: {}",
            panel["title"],
            panel["datasource"]
        );
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        let mut ref_ids = BTreeSet::new();
        for target in &targets {
            assert!(
                uses_variable(&target["datasource"]),
                "a query of panel {} does not use {reference}",
                panel["title"]
            );
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "panel {}: a query without expr: {target}",
                panel["title"]
            );
            let ref_id = target["refId"].as_str().unwrap_or_default();
            assert!(
                !ref_id.is_empty() && ref_ids.insert(ref_id.to_string()),
                "panel {}: refId {ref_id:?} missing or repeated",
                panel["title"]
            );
        }
    }
}

#[test]
fn panels_have_unique_ids_and_fit_the_grid_without_overlapping() {
    let dashboard = dashboard();
    let all = laid_out(&dashboard);
    assert!(!all.is_empty(), "{DASHBOARD} has no panels");
    let mut ids = BTreeSet::new();
    let mut cells: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    for panel in &all {
        let title = panel["title"].to_string();
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title} has no numeric id"));
        assert!(ids.insert(id), "panel id {id} is used twice ({title})");
        let grid = &panel["gridPos"];
        let field = |name: &str| {
            grid[name]
                .as_u64()
                .unwrap_or_else(|| panic!("panel {title}: gridPos.{name} is not a number: {grid}"))
        };
        let (x, y, w, h) = (field("x"), field("y"), field("w"), field("h"));
        assert!(
            (1..=24).contains(&w) && x + w <= 24 && h >= 1,
            "panel {title}: gridPos {grid} does not fit the 24-column grid"
        );
        for (other, ox, oy, ow, oh) in &cells {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "panels {title} and {other} overlap");
        }
        cells.push((title, x, y, w, h));
    }
}

#[test]
fn queries_use_only_the_variables_the_dashboard_defines() {
    let dashboard = dashboard();
    let defined: BTreeSet<String> = variables(&dashboard)
        .iter()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .chain(BUILTINS.iter().map(|b| b.to_string()))
        .collect();
    let used = panel_queries(&dashboard)
        .into_iter()
        .map(|q| (q.what, q.expr))
        .chain(variable_queries(&dashboard));
    for (what, expr) in used {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let name: String = rest
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                defined.contains(&name),
                "{what} uses ${name}, which the dashboard does not define: {expr}"
            );
        }
    }
}
