//! Content-named configuration ConfigMaps that no rollout in reach needs.
//!
//! Every change of a function's `spec.config` rolls out a new, immutable
//! ConfigMap named after its content; the Deployment's ReplicaSets of
//! earlier templates (`revisionHistoryLimit` = `historyLimit`) still name
//! the earlier ones. When a rollout's entry leaves `status.history`, its
//! ConfigMap is retired, and deleted once the next rollout has Succeeded
//! (every pod then runs the current template), unless the current rollout
//! or an entry still in the history uses the same content. So a function
//! keeps at most `historyLimit` + 1 ConfigMaps, and the operator's cache of
//! them stays bounded too.
//!
//! Rolling back is restating an earlier spec, which applies its ConfigMap
//! again. What is retired is remembered by this process only: a ConfigMap
//! retired just before a restart stays until its function is deleted (it
//! is owned by the function).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Resource, ResourceExt,
    api::{Api, DeleteParams},
    runtime::reflector::ObjectRef,
};

use super::Context;
use crate::{
    Result,
    api::{NetworkFunction, function::Provenance},
    render::function::config_map_name,
};

/// The config digests retired from each function's history (by uid) whose
/// ConfigMaps wait for the next rollout to succeed.
#[derive(Default)]
pub struct Retired(Mutex<HashMap<String, BTreeSet<String>>>);

impl Retired {
    /// Remembers that the entries with `digests` left the history of the
    /// function with `uid`.
    pub fn retire(&self, uid: &str, digests: impl IntoIterator<Item = String>) {
        let mut digests = digests.into_iter().peekable();
        if digests.peek().is_none() {
            return;
        }
        if let Ok(mut retired) = self.0.lock() {
            retired.entry(uid.to_string()).or_default().extend(digests);
        }
    }

    /// Takes what was retired of the function with `uid`.
    fn take(&self, uid: &str) -> BTreeSet<String> {
        self.0
            .lock()
            .ok()
            .and_then(|mut retired| retired.remove(uid))
            .unwrap_or_default()
    }

    /// Forgets the function with `uid` (deleted: its ConfigMaps go with it).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut retired) = self.0.lock() {
            retired.remove(uid);
        }
    }
}

/// The config digests `rollouts` (the current one and the history) use.
pub fn in_use<'a>(rollouts: impl IntoIterator<Item = &'a Provenance>) -> BTreeSet<&'a str> {
    rollouts
        .into_iter()
        .map(|p| p.config_digest.as_str())
        .collect()
}

/// The names of the ConfigMaps of `nf` to delete now that its current
/// rollout succeeded: those of `retired` digests not [`in_use`].
fn unneeded(
    nf: &NetworkFunction,
    in_use: &BTreeSet<&str>,
    retired: BTreeSet<String>,
) -> Vec<String> {
    retired
        .iter()
        .filter(|digest| !in_use.contains(digest.as_str()))
        .map(|digest| config_map_name(&nf.name_any(), digest))
        .collect()
}

/// Deletes the retired ConfigMaps of `nf` that nothing needs, after its
/// current rollout succeeded: only those the cache holds as owned by `nf`
/// (a function without config has none), each once.
pub async fn prune(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
    in_use: &BTreeSet<&str>,
) -> Result<()> {
    let uid = nf.uid().unwrap_or_default();
    let retired = ctx.state.retired_configs.take(&uid);
    if retired.is_empty() {
        return Ok(());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    for name in unneeded(nf, in_use, retired) {
        let owned = ctx
            .stores
            .config_maps
            .get(&ObjectRef::new(&name).within(ns))
            .is_some_and(|cm| {
                cm.meta()
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid)
            });
        if !owned {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::debug!(config_map = %name, "deleted a retired configuration"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NetworkFunctionStatus;

    fn at(config_digest: &str) -> Provenance {
        Provenance {
            config_digest: config_digest.into(),
            ..Provenance::default()
        }
    }

    #[test]
    fn only_configs_no_rollout_in_reach_uses_are_unneeded() {
        let nf: NetworkFunction = serde_yaml::from_str(
            "apiVersion: strata.dev/v1alpha1\nkind: NetworkFunction\n\
             metadata: {name: upf, namespace: telco, uid: u-1}\n\
             spec: {version: 2.3.1, image: upf, stackRef: {name: edge-net, version: '*'}}",
        )
        .unwrap();
        let status = NetworkFunctionStatus {
            deployed_with: Some(at("sha256:cccccccccccc")),
            history: vec![at("sha256:bbbbbbbbbbbb")],
            ..NetworkFunctionStatus::default()
        };
        let retired = [
            "sha256:aaaaaaaaaaaa",
            "sha256:bbbbbbbbbbbb",
            "sha256:cccccccccccc",
        ]
        .map(String::from)
        .into();
        let used = in_use(status.deployed_with.iter().chain(&status.history));
        assert_eq!(unneeded(&nf, &used, retired), ["upf-config-aaaaaaaaaa"]);

        let retired_twice = Retired::default();
        retired_twice.retire("u-1", ["sha256:aaaaaaaaaaaa".to_string()]);
        retired_twice.retire("u-1", ["sha256:dddddddddddd".to_string()]);
        assert_eq!(retired_twice.take("u-1").len(), 2);
        assert!(retired_twice.take("u-1").is_empty(), "taken once");
    }
}
