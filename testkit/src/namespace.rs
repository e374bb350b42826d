//! A namespace of one's own for each test.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::{Client, Resource};

use crate::plane_config;

/// Label on every test namespace, so leftovers of an interrupted run are easy
/// to find: `kubectl get ns -l strata.dev/test`.
const TEST_LABEL: &str = "strata.dev/test";

/// A namespace of one's own for a test, named after the test plus a random
/// suffix. Call [`TestNamespace::cleanup`] at the end of the test; if the test
/// panics first, `Drop` deletes the namespace (best effort) instead.
pub struct TestNamespace {
    name: String,
    client: Client,
    cleaned_up: bool,
}

impl TestNamespace {
    /// Creates a namespace `<test>-<random>` (a DNS-1123 label).
    pub async fn create(client: &Client, test: &str) -> Self {
        let name = format!("{}-{}", dns_label_prefix(test, 50), random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_string(), dns_label_prefix(test, 63))].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create test namespace {name}: {e}"));
        Self {
            name,
            client: client.clone(),
            cleaned_up: false,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An `Api` for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (and so everything in it). The namespace
    /// controller finishes the job in the background.
    pub async fn cleanup(mut self) {
        self.cleaned_up = true;
        delete_namespace(&self.client, &self.name).await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned_up {
            return;
        }
        // Dropped without cleanup: the test panicked, and we may be unwinding
        // inside the test's runtime, which cannot be blocked on. Delete from a
        // thread with its own runtime and its own client (a client's
        // connection tasks belong to the runtime that made it).
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for namespace cleanup");
            runtime.block_on(async {
                let client = Client::try_from(plane_config().await).expect("a client");
                delete_namespace(&client, &name).await;
            });
        })
        .join();
        if deleted.is_err() {
            eprintln!("warning: could not delete test namespace {}", self.name);
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) {
    // The operator may be gone by now; without it, the Stacks' deletion
    // protection would hold the namespace in Terminating forever.
    let stacks: Api<strata::api::Stack> = Api::namespaced(client.clone(), name);
    if let Ok(list) = stacks.list(&Default::default()).await {
        let patch = kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        for stack in list {
            let stack_name = stack.metadata.name.unwrap_or_default();
            let _ = stacks.patch(&stack_name, &Default::default(), &patch).await;
        }
    }
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => eprintln!("warning: cannot delete test namespace {name}: {e}"),
    }
}

/// The first `max` characters of `s` as a DNS-1123 label: lower case, runs of
/// anything else turned into one '-', no '-' at either end.
fn dns_label_prefix(s: &str, max: usize) -> String {
    let mut label = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
    }
    label.truncate(max);
    let label = label.trim_end_matches('-');
    if label.is_empty() {
        "test".into()
    } else {
        label.into()
    }
}

/// Eight random lower-case hex digits (std's per-process random hash keys,
/// mixed with the time so that two calls differ).
pub(crate) fn random_suffix() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_are_dns_labels() {
        assert_eq!(
            dns_label_prefix("api_admission::refuses_bad_input", 63),
            "api-admission-refuses-bad-input"
        );
        assert_eq!(dns_label_prefix("__X__", 63), "x");
        assert_eq!(dns_label_prefix("", 63), "test");
        assert_eq!(dns_label_prefix("abc-def", 4), "abc");
        assert_ne!(random_suffix(), random_suffix());
    }
}
