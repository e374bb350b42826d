//! What a NetworkFunction's Stack and dependencies resolve to: the Stack
//! revision it deploys onto, or why it cannot yet.

use std::collections::BTreeSet;

use kube::{Api, ResourceExt, runtime::reflector::ObjectRef};
use semver::{Version, VersionReq};

use super::Context;
use crate::{
    Error, Result,
    api::{NetworkFunction, Stack, function::Dependency},
    controllers::{conditions, waves},
    render::function::ResolvedStack,
};

/// Why a function cannot use its Stack right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// `StackNotFound`, `StackNotReady` or `StackVersionMismatch`.
    pub reason: &'static str,
    /// One sentence naming the Stack and its version.
    pub message: String,
}

/// Parses a requirement of `nf`'s spec; a bad one is the spec's fault (Stalled).
fn requirement(field: &str, text: &str) -> Result<VersionReq> {
    crate::api::version::requirement(field, text).map_err(|e| Error::InvalidSpec(e.into()))
}

/// The Stack a function is deployed onto, if it exists, is Ready and its
/// version satisfies the function's requirement.
///
/// Reads the cache first. The cache holds every change that woke a
/// reconcile, but a Stack can change again in between (say, become Ready at
/// the new version a moment after it was read); a function held back on the
/// cached view would only look again at its next resync. So a refusal is
/// confirmed with the API server before it holds anything back: a read,
/// only while the Stack does not resolve.
pub async fn resolve_stack(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
) -> Result<Result<ResolvedStack, Unresolved>> {
    let name = &nf.spec.stack_ref.name;
    let cached = ctx
        .stores
        .stacks
        .get(&ObjectRef::<Stack>::new(name).within(ns));
    let resolved = stack_resolution(nf, ns, cached.as_deref())?;
    if resolved.is_ok() {
        return Ok(resolved);
    }
    let live = Api::<Stack>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    stack_resolution(nf, ns, live.as_ref())
}

/// What `stack` (the Stack `nf` refers to, if it exists) resolves to for `nf`.
pub fn stack_resolution(
    nf: &NetworkFunction,
    ns: &str,
    stack: Option<&Stack>,
) -> Result<Result<ResolvedStack, Unresolved>> {
    let wanted = requirement("spec.stackRef.version", &nf.spec.stack_ref.version)?;
    let name = &nf.spec.stack_ref.name;
    let Some(stack) = stack else {
        return Ok(Err(Unresolved {
            reason: "StackNotFound",
            message: format!("stack {name} does not exist in namespace {ns}"),
        }));
    };
    let status = stack.status.clone().unwrap_or_default();
    let (Some(version), Some(digest)) = (status.version.clone(), status.digest.clone()) else {
        return Ok(Err(Unresolved {
            reason: "StackNotReady",
            message: format!("stack {name} has not applied a version yet"),
        }));
    };
    let current = status.observed_generation == stack.metadata.generation;
    if !current || !waves::applied(&status.conditions) {
        let why = conditions::get(&status.conditions, conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not reconciled yet".into());
        return Ok(Err(Unresolved {
            reason: "StackNotReady",
            message: format!("stack {name} is not Ready: {why}"),
        }));
    }
    let satisfied = Version::parse(&version)
        .map(|v| wanted.matches(&v))
        .unwrap_or(false);
    if !satisfied {
        return Ok(Err(Unresolved {
            reason: "StackVersionMismatch",
            message: format!(
                "stack {name} is at {version}, which does not satisfy {}",
                nf.spec.stack_ref.version
            ),
        }));
    }
    Ok(Ok(ResolvedStack {
        name: name.clone(),
        version,
        digest,
        outputs: status.outputs,
    }))
}

/// The first dependency that is not Ready at a satisfying version, described
/// for the `DependenciesReady` condition; `None` when all are.
///
/// Like [`resolve_stack`], a dependency the cache shows as blocking is read
/// again from the API server before it holds the function back: the cache
/// can lag the change (the dependency becoming Ready) that triggered this
/// reconcile, and a blocked function only looks again 30 seconds later.
pub async fn blocking_dependency(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
) -> Result<Option<String>> {
    let api: Api<NetworkFunction> = Api::namespaced(ctx.client.clone(), ns);
    for (i, dep) in nf.spec.depends_on.iter().enumerate() {
        let cached = ctx
            .stores
            .functions
            .get(&ObjectRef::<NetworkFunction>::new(&dep.name).within(ns));
        if dependency_block(i, dep, cached.as_deref())?.is_none() {
            continue;
        }
        let live = api.get_opt(&dep.name).await?;
        if let Some(why) = dependency_block(i, dep, live.as_ref())? {
            return Ok(Some(why));
        }
    }
    Ok(None)
}

/// Why dependency `dep` (entry `index` of `spec.dependsOn`), found as
/// `other`, blocks its dependent; `None` when it is Ready at a satisfying version.
pub fn dependency_block(
    index: usize,
    dep: &Dependency,
    other: Option<&NetworkFunction>,
) -> Result<Option<String>> {
    let wanted = requirement(&format!("spec.dependsOn[{index}].version"), &dep.version)?;
    let Some(other) = other else {
        return Ok(Some(format!("dependency {} does not exist", dep.name)));
    };
    let status = other.status.clone().unwrap_or_default();
    let deployed = status.deployed_with.as_ref().map(|d| d.version.clone());
    let ready = conditions::is_true(&status.conditions, conditions::READY)
        && status.observed_generation == other.metadata.generation;
    let version = deployed.clone().unwrap_or_else(|| "no version".into());
    let satisfied = deployed
        .as_deref()
        .and_then(|v| Version::parse(v).ok())
        .is_some_and(|v| wanted.matches(&v));
    if ready && satisfied {
        return Ok(None);
    }
    let state = if ready { "Ready" } else { "not Ready" };
    Ok(Some(format!(
        "dependency {} is at {version} and {state}; it must be Ready at {}",
        dep.name, dep.version
    )))
}

/// A dependency cycle through `nf`, as "a -> b -> a", if there is one.
pub fn dependency_cycle(ctx: &Context, nf: &NetworkFunction, ns: &str) -> Option<String> {
    let start = nf.name_any();
    let edges = |name: &str| -> Vec<String> {
        if name == start {
            return nf.spec.depends_on.iter().map(|d| d.name.clone()).collect();
        }
        ctx.stores
            .functions
            .get(&ObjectRef::<NetworkFunction>::new(name).within(ns))
            .map(|f| f.spec.depends_on.iter().map(|d| d.name.clone()).collect())
            .unwrap_or_default()
    };
    // Depth-first search from `start`, keeping the path, bounded by the visited set.
    let mut path = vec![start.clone()];
    let mut visited = BTreeSet::new();
    let mut stack = vec![edges(&start).into_iter()];
    while let Some(next) = stack.last_mut() {
        match next.next() {
            Some(name) if name == start => {
                path.push(name);
                return Some(path.join(" -> "));
            }
            Some(name) => {
                if visited.insert(name.clone()) {
                    path.push(name.clone());
                    stack.push(edges(&name).into_iter());
                }
            }
            None => {
                stack.pop();
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(stack_version: &str, depends_on: &str) -> NetworkFunction {
        serde_yaml::from_str(&format!(
            "apiVersion: strata.dev/v1alpha1\nkind: NetworkFunction\n\
             metadata: {{name: upf, namespace: telco, generation: 1}}\n\
             spec: {{version: 2.3.1, image: upf, stackRef: {{name: edge-net, version: '{stack_version}'}}, dependsOn: {depends_on}}}"
        ))
        .unwrap()
    }

    fn stack(version: &str, generation: i64, observed: i64, ready: bool) -> Stack {
        serde_yaml::from_str(&format!(
            "apiVersion: strata.dev/v1alpha1\nkind: Stack\n\
             metadata: {{name: edge-net, namespace: telco, generation: {generation}}}\n\
             spec: {{version: {version}}}\n\
             status: {{observedGeneration: {observed}, version: {version}, digest: 'sha256:d', outputs: {{dns: x}},\
             conditions: [{{type: Ready, status: '{}', reason: Applied, message: 'version {version} applied', lastTransitionTime: '2026-11-20T10:00:00Z'}}]}}",
            if ready { "True" } else { "False" }
        ))
        .unwrap()
    }

    fn unresolved(nf: &NetworkFunction, stack: Option<&Stack>) -> (&'static str, String) {
        let e = stack_resolution(nf, "telco", stack).unwrap().unwrap_err();
        (e.reason, e.message)
    }

    #[test]
    fn stack_resolution_names_the_stack_and_its_version() {
        let nf = function(">=1.4, <2", "[]");
        assert_eq!(
            unresolved(&nf, None),
            (
                "StackNotFound",
                "stack edge-net does not exist in namespace telco".into()
            )
        );
        assert_eq!(
            unresolved(&nf, Some(&stack("1.5.0", 2, 1, true))),
            (
                "StackNotReady",
                "stack edge-net is not Ready: version 1.5.0 applied".into()
            ),
            "a status of an earlier generation does not count"
        );
        assert_eq!(
            unresolved(&nf, Some(&stack("1.5.0", 1, 1, false))).0,
            "StackNotReady"
        );
        assert_eq!(
            unresolved(&nf, Some(&stack("2.0.0", 1, 1, true))),
            (
                "StackVersionMismatch",
                "stack edge-net is at 2.0.0, which does not satisfy >=1.4, <2".into()
            )
        );
        let resolved = stack_resolution(&nf, "telco", Some(&stack("1.5.0", 3, 3, true)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (resolved.version.as_str(), resolved.digest.as_str()),
            ("1.5.0", "sha256:d")
        );
        assert!(
            stack_resolution(&function("not semver", "[]"), "telco", None).is_err(),
            "an invalid requirement is an error, not a state"
        );
    }

    #[test]
    fn dependencies_block_until_ready_at_a_satisfying_version() {
        let dep = Dependency {
            name: "smf".into(),
            version: ">=2.0".into(),
        };
        let smf = |version: &str, ready: bool, observed: i64| {
            let mut nf = function("*", "[]");
            nf.metadata.name = Some("smf".into());
            nf.status = Some(
                serde_json::from_value(serde_json::json!({
                    "observedGeneration": observed,
                    "deployedWith": {"version": version, "image": "smf", "imagePinned": false,
                        "stack": {"name": "edge-net", "version": "1.0.0", "digest": "sha256:d"},
                        "configDigest": "sha256:c", "record": "smf-1", "deployedAt": "2026-11-20T10:00:00Z"},
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "reason": "R", "message": "m", "lastTransitionTime": "2026-11-20T10:00:00Z"}],
                }))
                .unwrap(),
            );
            nf
        };
        let block = |other: Option<&NetworkFunction>| dependency_block(0, &dep, other).unwrap();
        assert_eq!(
            block(None).as_deref(),
            Some("dependency smf does not exist")
        );
        assert_eq!(
            block(Some(&smf("1.9.0", true, 1))).as_deref(),
            Some("dependency smf is at 1.9.0 and Ready; it must be Ready at >=2.0")
        );
        assert_eq!(
            block(Some(&smf("2.1.0", false, 1))).as_deref(),
            Some("dependency smf is at 2.1.0 and not Ready; it must be Ready at >=2.0")
        );
        assert!(
            block(Some(&smf("2.1.0", true, 0))).is_some(),
            "Ready for an earlier generation is not Ready"
        );
        assert_eq!(block(Some(&smf("2.1.0", true, 1))), None);
    }
}
