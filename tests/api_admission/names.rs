//! Strata's resource names as kubectl resolves them: `kubectl get NAME`
//! picks the first kind any served group calls NAME (plural, singular or
//! short name), so a Strata name that another kind already uses would
//! shadow it or be shadowed (`sc` is StorageClass's). Checked against the
//! plane's own discovery, not a list kept by hand.

use std::collections::BTreeMap;

use strata_testkit::{client, install_crds};

/// Every name kubectl resolves to a kind (lower case), with the
/// `group/kind` it resolves to, for every group the plane serves except
/// `strata.dev`; and the names the plane serves for `strata.dev` itself.
async fn served_names(client: &kube::Client) -> (BTreeMap<String, String>, Vec<String>) {
    let mut others = BTreeMap::new();
    let mut strata = Vec::new();
    let mut lists = vec![(
        String::new(),
        client
            .list_core_api_resources("v1")
            .await
            .expect("core discovery"),
    )];
    for group in client.list_api_groups().await.expect("discovery").groups {
        for version in &group.versions {
            let list = client
                .list_api_group_resources(&version.group_version)
                .await
                .expect("group discovery");
            lists.push((group.name.clone(), list));
        }
    }
    for (group, list) in lists {
        for resource in list.resources.iter().filter(|r| !r.name.contains('/')) {
            let names = [&resource.name, &resource.singular_name, &resource.kind]
                .into_iter()
                .map(|n| n.to_lowercase())
                .chain(resource.short_names.iter().flatten().cloned())
                .filter(|n| !n.is_empty());
            if group == "strata.dev" {
                strata.extend(names);
            } else {
                for name in names {
                    others.insert(name, format!("{group}/{}", resource.kind));
                }
            }
        }
    }
    (others, strata)
}

/// No plural, singular, kind or short name of a Strata kind is a name of
/// another kind the plane serves, and the plane serves exactly the short
/// names the types declare (so the check ran against the installed CRDs).
#[tokio::test]
async fn strata_names_collide_with_no_served_kind() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let (others, served) = served_names(&client).await;
    assert!(
        others
            .get("sc")
            .is_some_and(|k| k.ends_with("/StorageClass")),
        "the plane's discovery should list StorageClass as `sc`: {others:?}"
    );
    let mut collisions = Vec::new();
    for crd in strata::api::crds() {
        let names = &crd.spec.names;
        let kind = names.kind.to_lowercase();
        let ours = [&names.plural, &kind]
            .into_iter()
            .chain(names.singular.as_ref())
            .chain(names.short_names.iter().flatten());
        for name in ours {
            assert!(
                served.contains(name),
                "the plane does not serve `{name}` of {}: are the committed CRDs current?",
                names.kind
            );
            if let Some(other) = others.get(name.as_str()) {
                collisions.push(format!("{}: `{name}` is also {other}", names.kind));
            }
        }
    }
    assert!(
        collisions.is_empty(),
        "Strata names that another served kind uses (kubectl resolves only one of them):\n{}",
        collisions.join("\n")
    );
}
