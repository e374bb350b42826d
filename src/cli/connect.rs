//! The cluster and namespace a command reads, chosen as kubectl chooses
//! them: `--kubeconfig`, else `KUBECONFIG` (several files merged), else
//! `~/.kube/config`, else the in-cluster ServiceAccount; `--context`; the
//! namespace from `-n`, else the context's, else `default`; `-A` for all.

use std::path::PathBuf;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt, api::ListParams};
use serde::de::DeserializeOwned;

use super::{Error, Format, Result};

/// The flags every command for people shares, spelled as kubectl's.
#[derive(Args, Debug, Clone)]
pub struct Globals {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Output: a table for people, or json / yaml for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Where a command reads: one namespace, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (`-A`).
    All,
}

/// A client and the scope the flags chose.
#[derive(Clone)]
pub struct Cluster {
    /// A client for the chosen context.
    pub client: Client,
    /// The namespace, or all of them.
    pub scope: Scope,
}

impl Globals {
    /// A client for the cluster and the scope the flags name.
    pub async fn connect(&self) -> Result<Cluster> {
        let config = self.config().await?;
        let scope = match (&self.namespace, self.all_namespaces) {
            (_, true) => Scope::All,
            (Some(namespace), false) => Scope::Namespace(namespace.clone()),
            (None, false) => Scope::Namespace(config.default_namespace.clone()),
        };
        let client = Client::try_from(config)?;
        Ok(Cluster { client, scope })
    }

    async fn config(&self) -> Result<Config> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let kubeconfig = match &self.kubeconfig {
            Some(path) => Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?,
            None => match Kubeconfig::read() {
                Ok(kubeconfig) => kubeconfig,
                // No kubeconfig at all: inside a pod, its ServiceAccount.
                Err(_) if self.context.is_none() && Config::incluster().is_ok() => {
                    return Config::incluster().map_err(|e| Error::Config(e.to_string()));
                }
                Err(e) => {
                    return Err(Error::Config(format!(
                        "no kubeconfig ({e}): set KUBECONFIG or pass --kubeconfig"
                    )));
                }
            },
        };
        Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| Error::Config(format!("kubeconfig: {e}")))
    }
}

impl Cluster {
    /// An `Api` for kind `K` in `namespace`.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// An `Api` for kind `K` over the scope: one namespace, or all.
    pub fn scoped<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.scope {
            Scope::Namespace(namespace) => self.api(namespace),
            Scope::All => Api::all(self.client.clone()),
        }
    }

    /// The object `name` of kind `K` in the scope: with `-A`, the one
    /// namespace that holds it. `kind` is how people write the kind.
    pub async fn locate<K>(&self, kind: &'static str, name: &str) -> Result<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let not_found = |scope: String| Error::NotFound {
            kind,
            name: name.to_string(),
            scope,
        };
        match &self.scope {
            Scope::Namespace(namespace) => self
                .api::<K>(namespace)
                .get_opt(name)
                .await?
                .ok_or_else(|| not_found(format!("namespace {namespace}"))),
            Scope::All => {
                let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
                let mut found = Api::<K>::all(self.client.clone())
                    .list(&by_name)
                    .await?
                    .items;
                match found.len() {
                    0 => Err(not_found("any namespace".into())),
                    1 => Ok(found.remove(0)),
                    _ => Err(Error::Ambiguous {
                        kind,
                        name: name.to_string(),
                        namespaces: found
                            .iter()
                            .filter_map(|o| o.namespace())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    }
}
