//! Hostile input against the real operator on the real control plane: one
//! namespace, one operator, bad and good objects applied at the same time.
//!
//! - Bad Stacks (nested deeper than serde_json reads, bad placeholders, a
//!   ConfigMap over the API server's size limit, a name of 253 characters)
//!   each end `Stalled` with a message naming the field, and a Warning Event;
//!   nothing of them is applied.
//! - Meanwhile the good objects reconcile to Ready, and keep reconciling: a
//!   Stack of about 1.2 MB with unusual Unicode in its parameters and
//!   outputs, with a 253-character name, and a NetworkFunction with the
//!   longest name allowed (52) consuming it. Unicode arrives byte-exact in
//!   the Stack's ConfigMap, the function's config ConfigMap and `STACK_*` env.
//!   A deeply nested Stack is in the operator's very first list of Stacks,
//!   which used to keep every cache from syncing.
//! - What the API server refuses at admission is named: a function name of
//!   53 characters, a Stack name of 254, a Stack bigger than etcd stores, 33
//!   comparators in a requirement.
//! - Bad NetworkFunctions on the good Stack (a config key that is not a
//!   file name, an env variable that collides with a Stack output) are
//!   Stalled too, and roll nothing out.
//! - The operator never panics.
//! - [`properties`]: the digest and Stack rendering on arbitrary input
//!   (no control plane). Substitution and requirement parsing are
//!   property-tested next to their code: `src/render/template/properties.rs`,
//!   `src/api/rules/properties.rs`.

mod properties;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, NetworkFunction, Stack};
use strata::render::label_value;
use strata_testkit::Operator;
use strata_testkit::{FIELD_MANAGER, TestNamespace, client, install_crds, wait_for};

/// How long any one expected state may take to appear.
const DEADLINE: Duration = Duration::from_secs(60);

/// Text that trips byte-oriented code: a right-to-left override and Hebrew,
/// a combining mark, zero-width space and joiner, a byte order mark, a ZWJ
/// emoji sequence, astral-plane letters and the last code point.
const UNUSUAL: &str = "\u{202e}RTL \u{5e9}\u{5dc}\u{5d5}\u{5dd} e\u{301} zero\u{200b}width \u{feff} 👩\u{200d}👩\u{200d}👧 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10ffff}";

/// A DNS subdomain of exactly 253 characters starting with `prefix`.
fn longest_name(prefix: &str) -> String {
    let mut name = prefix.to_string();
    while 253 - name.len() > 51 {
        name.push('.');
        name.push_str(&"x".repeat(50));
    }
    let room = 253 - name.len();
    assert!(room >= 2, "choose another prefix than {prefix}");
    name.push('.');
    name.push_str(&"y".repeat(room - 1));
    name
}

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn stack(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec})
}

/// A Stack whose one ConfigMap has a field nested `depth` arrays deep.
fn deep_stack(name: &str, depth: usize) -> Value {
    let mut deep = json!("leaf");
    for _ in 0..depth {
        deep = Value::Array(vec![deep]);
    }
    let mut resource = configmap(name, json!({"k": "v"}));
    resource["x"] = deep;
    stack(name, json!({"version": "1.0.0", "resources": [resource]}))
}

async fn apply<K>(api: &Api<K>, object: &Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Waits until Stack `name` is Stalled for its generation, and returns the
/// message, after checking that Ready=False says the same and that nothing
/// of the Stack was applied.
async fn wait_stalled(stacks: &Api<Stack>, configmaps: &Api<ConfigMap>, name: &str) -> String {
    let stack = wait_for(DEADLINE, &format!("stack {name} Stalled"), || async {
        let stack = stacks.get(name).await.map_err(|e| e.to_string())?;
        let status = stack.status.clone().unwrap_or_default();
        let stalled = status.conditions.iter().any(|c| {
            c.type_ == "Stalled"
                && c.status == "True"
                && c.observed_generation == stack.metadata.generation
        });
        if stalled {
            Ok(stack)
        } else {
            Err(serde_json::to_string(&status).unwrap())
        }
    })
    .await;
    let status = stack.status.unwrap();
    let condition = |t: &str| status.conditions.iter().find(|c| c.type_ == t).unwrap();
    let (stalled, ready) = (condition("Stalled"), condition("Ready"));
    assert_eq!(
        (ready.status.as_str(), &ready.reason, &ready.message),
        ("False", &stalled.reason, &stalled.message)
    );
    assert_eq!(
        (status.version, status.inventory),
        (None, vec![]),
        "nothing of {name} applied"
    );
    let selector = format!("strata.dev/stack={}", label_value(name));
    let applied = configmaps
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(applied.items.is_empty(), "objects of stack {name} exist");
    format!("{}: {}", stalled.reason, stalled.message)
}

/// Waits until NetworkFunction `name` is Stalled for its generation, and
/// returns `reason: message`.
async fn wait_function_stalled(functions: &Api<NetworkFunction>, name: &str) -> String {
    wait_for(DEADLINE, &format!("function {name} Stalled"), || async {
        let nf = functions.get(name).await.map_err(|e| e.to_string())?;
        let status = nf.status.clone().unwrap_or_default();
        status
            .conditions
            .iter()
            .find(|c| {
                c.type_ == "Stalled"
                    && c.status == "True"
                    && c.observed_generation == nf.metadata.generation
            })
            .map(|c| format!("{}: {}", c.reason, c.message))
            .ok_or_else(|| serde_json::to_string(&status.conditions).unwrap())
    })
    .await
}

/// Waits for a Warning Event with `reason` about the Stack named `name`.
async fn wait_warning(events: &Api<Event>, name: &str, reason: &str) {
    wait_for(
        DEADLINE,
        &format!("a Warning Event {reason} about {name}"),
        || async {
            let list = events.list(&ListParams::default()).await.unwrap();
            let found = list.items.iter().any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
            });
            found.then_some(())
        },
    )
    .await
}

#[tokio::test]
async fn bad_objects_stall_by_name_while_good_ones_keep_reconciling() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "hostile-input").await;
    let stacks: Api<Stack> = ns.api();
    let functions: Api<NetworkFunction> = ns.api();
    let configmaps: Api<ConfigMap> = ns.api();
    let events: Api<Event> = ns.api();

    // In the operator's first list of Stacks: a resource nested 150 deep,
    // which the API server stores and serde_json does not read (128).
    apply(&stacks, &deep_stack("deep-before-start", 150))
        .await
        .expect("the API server stores deep Stacks");
    let mut operator = Operator::start(ns.name());

    // The good objects: a Stack of ~1.2 MB with the longest name, Unicode in
    // its parameters and outputs, and the longest function name on it.
    let good = longest_name("edge-net");
    let function = format!("nf-{}", "a".repeat(49));
    assert_eq!(function.len(), 52);
    let good_spec = |version: &str, greeting: &str| {
        json!({
            "version": version,
            "parameters": {"greeting": greeting},
            "outputs": {"greeting": "${greeting}", "literal": "$${greeting}"},
            "resources": [
                configmap("unicode", json!({"greeting": "${greeting}", "literal": "$${greeting}"})),
                configmap("bulk-a", json!({"payload": "a".repeat(600_000)})),
                configmap("bulk-b", json!({"payload": "b".repeat(600_000)})),
            ],
        })
    };
    apply(&stacks, &stack(&good, good_spec("1.0.0", UNUSUAL)))
        .await
        .expect("a Stack of 1.2 MB is accepted");
    let image = format!("registry.example/nf@sha256:{}", "4b".repeat(32));
    let nf = json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
        "metadata": {"name": function},
        "spec": {
            "version": "1.0.0", "image": image, "replicas": 1,
            "stackRef": {"name": good, "version": ">=1.0.0, <2"},
            "stackOutputs": true,
            "ports": [{"name": "gtpu", "port": 2152, "protocol": "UDP"}],
            "env": [{"name": "GREETING", "value": UNUSUAL}],
            "config": {"greeting.txt": UNUSUAL},
        },
    });
    apply(&functions, &nf).await.expect("a 52-character name");
    // Bad functions on the same Stack, which admission cannot refuse.
    let bad_functions = [
        ("bad-config-key", json!({"config": {"../passwd": "x"}})),
        (
            "bad-env",
            json!({"stackOutputs": true, "env": [{"name": "STACK_GREETING", "value": "x"}]}),
        ),
    ];
    for (name, extra) in &bad_functions {
        let mut bad = nf.clone();
        bad["metadata"]["name"] = json!(name);
        for (key, value) in extra.as_object().unwrap() {
            bad["spec"][key] = value.clone();
        }
        apply(&functions, &bad).await.expect("admitted");
    }

    // The bad Stacks, at the same time.
    let long_bad = longest_name("broken");
    let bad = [
        stack(
            "unknown-placeholder",
            json!({"version": "1.0.0", "parameters": {"vlan": "120"}, "resources": [
                configmap("unknown-placeholder", json!({"vlan": "${vlan}", "gateway": "10.0.${subnet}.1"}))]}),
        ),
        stack(
            "invalid-placeholder",
            json!({"version": "1.0.0", "parameters": {"vlan": "120"}, "resources": [
                configmap("invalid-placeholder", json!({"vlan": "${ vlan }"}))]}),
        ),
        stack(
            "unterminated-placeholder",
            json!({"version": "1.0.0", "outputs": {"gateway": "10.0.${vlan"}, "parameters": {"vlan": "120"}}),
        ),
        stack(
            "oversized",
            json!({"version": "1.0.0", "resources": [
                configmap("oversized", json!({"payload": "o".repeat(1_100_000)}))]}),
        ),
        deep_stack("deep-while-running", 120),
        stack(
            &long_bad,
            json!({"version": "1.0.0", "resources": [
                configmap("long-named", json!({"k": "${missing}"}))]}),
        ),
    ];
    for object in &bad {
        apply(&stacks, object).await.expect("admitted");
    }

    // Each bad Stack is Stalled, naming what is wrong, and nothing of it
    // is applied.
    let too_deep = |name: &str| {
        format!(
            "InvalidSpec: spec.resources[0] (ConfigMap/{name}) is nested deeper than 100 levels; flatten it (Kubernetes objects are never this deep)"
        )
    };
    for (name, expected) in [
        ("deep-before-start".to_string(), too_deep("deep-before-start")),
        ("deep-while-running".to_string(), too_deep("deep-while-running")),
        (
            "unknown-placeholder".to_string(),
            "InvalidSpec: spec.resources[0] (ConfigMap/unknown-placeholder) uses ${subnet} in data.gateway, which is not a parameter; add it to spec.parameters or fix the placeholder".to_string(),
        ),
        (
            "invalid-placeholder".to_string(),
            "InvalidSpec: spec.resources[0] (ConfigMap/invalid-placeholder) uses ${ vlan } in data.vlan, which is not a valid placeholder; a name starts with a letter or '_' and has only letters, digits, '_', '.' and '-' (write $${ for a literal ${)".to_string(),
        ),
        (
            "unterminated-placeholder".to_string(),
            "InvalidSpec: spec.outputs has a ${ without a closing } in gateway; close the placeholder or write $${ for a literal ${".to_string(),
        ),
        (
            long_bad.clone(),
            "InvalidSpec: spec.resources[0] (ConfigMap/long-named) uses ${missing} in data.k, which is not a parameter; add it to spec.parameters or fix the placeholder".to_string(),
        ),
    ] {
        assert_eq!(wait_stalled(&stacks, &configmaps, &name).await, expected);
    }
    let oversized = wait_stalled(&stacks, &configmaps, "oversized").await;
    assert!(
        oversized.starts_with(
            r#"InvalidSpec: spec.resources[0] (ConfigMap/oversized) was refused by the API server: ConfigMap "oversized" is invalid: "#
        ) && oversized.contains("Too long"),
        "{oversized}"
    );
    for (name, expected) in [
        (
            "bad-config-key",
            r#"InvalidSpec: spec.config has the key "../passwd", which is not a valid ConfigMap key"#,
        ),
        (
            "bad-env",
            "InvalidSpec: environment variable STACK_GREETING is set by both spec.env[0] and ",
        ),
    ] {
        let message = wait_function_stalled(&functions, name).await;
        assert!(message.starts_with(expected), "{message}");
        let deployments: Api<Deployment> = ns.api();
        assert!(deployments.get_opt(name).await.unwrap().is_none());
    }
    // The Warning Events, also about the Stack whose name is too long for
    // the name kube's Recorder gives an Event.
    wait_warning(&events, &long_bad, "InvalidSpec").await;
    wait_warning(&events, "deep-before-start", "InvalidSpec").await;

    // Meanwhile the good objects are Ready, Unicode byte-exact everywhere.
    let ready = wait_good(&stacks, &functions, &good, &function, "1.0.0").await;
    assert_eq!(
        ready.status.as_ref().unwrap().outputs,
        BTreeMap::from([
            ("greeting".to_string(), UNUSUAL.to_string()),
            ("literal".to_string(), "${greeting}".to_string()),
        ])
    );
    let unicode = configmaps.get("unicode").await.unwrap();
    assert_eq!(
        unicode.data.unwrap(),
        BTreeMap::from([
            ("greeting".to_string(), UNUSUAL.to_string()),
            ("literal".to_string(), "${greeting}".to_string()),
        ])
    );
    for bulk in ["bulk-a", "bulk-b"] {
        let data = configmaps.get(bulk).await.unwrap().data.unwrap();
        assert_eq!(data["payload"].len(), 600_000);
    }
    assert_function_env(&ns, &function, UNUSUAL).await;
    // Its Service has the function's name too: 52 characters fit a DNS label.
    let service = ns.api::<Service>().get(&function).await.unwrap();
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 2152);

    // And they keep reconciling while the bad ones stay Stalled: a new
    // version of the good Stack is adopted by its function.
    let changed = format!("{UNUSUAL} ✓");
    apply(&stacks, &stack(&good, good_spec("1.0.1", &changed)))
        .await
        .unwrap();
    wait_good(&stacks, &functions, &good, &function, "1.0.1").await;
    assert_function_env(&ns, &function, &changed).await;
    let records: Api<DeploymentRecord> = ns.api();
    let selector = format!("strata.dev/network-function={function}");
    let records = records
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(records.len(), 2, "one record per rollout");
    for record in &records {
        let name = record.name_any();
        assert!(
            name.len() == 59 && name.starts_with(&format!("{function}-")),
            "{name}"
        );
        assert_eq!(
            record.labels().get("strata.dev/stack"),
            Some(&label_value(&good))
        );
    }
    for name in ["deep-before-start", "unknown-placeholder", "oversized"] {
        let stack = stacks.get(name).await.unwrap();
        let stalled = stack.status.unwrap().conditions;
        assert!(
            stalled
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True"),
            "{name} is still Stalled"
        );
    }

    refused_at_admission(&ns).await;

    operator.assert_running();
    let logs = operator.logs();
    assert!(!logs.contains("panicked"), "the operator panicked:\n{logs}");
    drop(operator);
    ns.cleanup().await;
}

/// Waits until Stack `stack` is Ready at `version` and function `function`
/// is Ready on it, and returns the Stack.
async fn wait_good(
    stacks: &Api<Stack>,
    functions: &Api<NetworkFunction>,
    stack: &str,
    function: &str,
    version: &str,
) -> Stack {
    let ready = wait_for(
        DEADLINE,
        &format!("the good stack Ready at {version}"),
        || async {
            let stack = stacks.get(stack).await.map_err(|e| e.to_string())?;
            let status = stack.status.clone().unwrap_or_default();
            let ready = status.version.as_deref() == Some(version)
                && status.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == stack.metadata.generation
                });
            if ready {
                Ok(stack)
            } else {
                Err(serde_json::to_string(&status.conditions).unwrap())
            }
        },
    )
    .await;
    wait_for(
        DEADLINE,
        &format!("function {function} Ready on stack {version}"),
        || async {
            let nf = functions.get(function).await.map_err(|e| e.to_string())?;
            let status = nf.status.clone().unwrap_or_default();
            let on = status
                .deployed_with
                .as_ref()
                .map(|d| d.stack.version.as_str());
            let ready = on == Some(version)
                && status.conditions.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "True"
                        && c.observed_generation == nf.metadata.generation
                });
            if ready {
                Ok(())
            } else {
                Err(serde_json::to_string(&status).unwrap())
            }
        },
    )
    .await;
    ready
}

/// The function's container has `GREETING` and `STACK_GREETING` set to
/// `greeting` byte for byte (and the escaped output literally), and its
/// config ConfigMap holds the Unicode file as written.
async fn assert_function_env(ns: &TestNamespace, function: &str, greeting: &str) {
    let deployment = ns.api::<Deployment>().get(function).await.unwrap();
    let pod = deployment.spec.template.spec.unwrap();
    let env: BTreeMap<String, String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["GREETING"], UNUSUAL);
    assert_eq!(env["STACK_GREETING"], greeting);
    assert_eq!(env["STACK_LITERAL"], "${greeting}");
    let config_map = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .expect("the config volume");
    assert!(config_map.starts_with(&format!("{function}-config-")));
    let config = ns.api::<ConfigMap>().get(&config_map).await.unwrap();
    assert_eq!(config.data.unwrap()["greeting.txt"], UNUSUAL);
}

/// What the API server refuses before the operator sees it, and how it says so.
async fn refused_at_admission(ns: &TestNamespace) {
    let functions: Api<NetworkFunction> = ns.api();
    let stacks: Api<Stack> = ns.api();

    let nf = |name: &str, requirement: &str| {
        json!({"apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
            "metadata": {"name": name},
            "spec": {"version": "1.0.0", "image": "registry.example/nf:1",
                     "stackRef": {"name": "s", "version": requirement}}})
    };
    let message = refusal(apply(&functions, &nf(&format!("nf-{}", "a".repeat(50)), "*")).await);
    assert!(
        message.contains("metadata.name")
            && message.contains("must be a DNS-1035 label of at most 52 characters"),
        "{message}"
    );
    let many = vec!["1"; 33].join(",");
    let message = refusal(apply(&functions, &nf("too-many-comparators", &many)).await);
    assert!(
        message.contains("spec.stackRef.version") && message.contains("semver requirement"),
        "{message}"
    );

    let message = refusal(
        apply(
            &stacks,
            &stack(
                &format!("{}x", longest_name("too-long")),
                json!({"version": "1.0.0"}),
            ),
        )
        .await,
    );
    assert!(
        message.contains("metadata.name") && message.contains("253"),
        "{message}"
    );

    // Bigger than etcd stores (1.5 MiB), smaller than the API server reads (3 MiB).
    let huge = stack(
        "huge",
        json!({"version": "1.0.0", "resources": [configmap("huge", json!({"payload": "h".repeat(1_700_000)}))]}),
    );
    let created = stacks
        .create(
            &PostParams::default(),
            &serde_json::from_value(huge).unwrap(),
        )
        .await;
    let message = refusal(created);
    assert!(message.contains("request is too large"), "{message}");
}

/// The API server's refusal of a request: its code and message.
fn refusal<T>(result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => format!("{}: {}", status.code, status.message),
        Err(other) => panic!("not refused by the API server: {other}"),
        Ok(_) => panic!("admitted"),
    }
}
