//! Clients for other clusters, from a kubeconfig held in a Secret: Flux's
//! `kubeConfig.secretRef`.
//!
//! The Secret is read with one `get` when a client is needed (never listed
//! or watched, so the operator holds no Secret in memory), and the
//! kubeconfig is accepted only with every credential inline. A kubeconfig
//! is written by whoever may create Secrets in a namespace, and the
//! operator runs with more rights than they have: one that would make the
//! operator run a program (`exec`, `auth-provider`) or read a file of its
//! own (a path in `certificate-authority`, `client-certificate`,
//! `client-key`, `tokenFile`: its service-account token, for one) would
//! lend them those rights. Flux's controllers refuse `exec` by default for
//! the same reason (`--insecure-kubeconfig-exec` turns it on), and skip TLS
//! verification only with `--insecure-kubeconfig-tls`; Strata has no such
//! switches and refuses all of these, wherever in the kubeconfig they are.
//!
//! Errors name the Secret, the key and what is wrong, never what the
//! Secret holds: no token, key, certificate or path, and no message of a
//! parser that quotes its input.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Client, Config,
    api::Api,
    config::{KubeConfigOptions, Kubeconfig},
};

/// The key a `secretRef` reads when it names none, as in Flux.
pub const DEFAULT_KEY: &str = "value";

/// Flux's second choice when the key is the default and `value` is absent.
const DEFAULT_KEY_YAML: &str = "value.yaml";

/// How long the remote API server may take to accept a connection: an
/// unreachable upstream is reported within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay silent: longer than a watch's own
/// server-side timeout (kube's watcher asks for 290 s), so that a quiet
/// watch of upstream records is ended by the server and resumed, not cut
/// and listed again every half minute. A server that accepts and then says
/// nothing is given up after this.
const READ_TIMEOUT: Duration = Duration::from_secs(295);

/// A client for another cluster.
#[derive(Clone)]
pub struct Remote {
    /// Authenticated as the kubeconfig's current context says.
    pub client: Client,
    /// The API server's URL, as the kubeconfig writes it (without a trailing
    /// `/`): recorded as evidence of where something was verified. It is not
    /// a credential: a URL that carries one (`https://user:pass@host`) is
    /// refused.
    pub server: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Why no client could be made from a kubeconfig Secret. Its `Display` is
/// `secret NAME key KEY: PROBLEM`, fit for a condition message; neither it
/// nor `Debug` ever holds anything the Secret contains.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("secret {secret} key {key}: {problem}")]
pub struct KubeconfigError {
    /// The Secret's name (in the namespace the caller named).
    pub secret: String,
    /// The key that was read.
    pub key: String,
    /// What is wrong.
    pub problem: KubeconfigProblem,
}

/// Where in a kubeconfig a refused setting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `clusters[i]`.
    Cluster(usize),
    /// `users[i]`.
    User(usize),
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Cluster(i) => write!(f, "clusters[{i}]"),
            Entry::User(i) => write!(f, "users[{i}]"),
        }
    }
}

/// What is wrong with a kubeconfig Secret. Every message is built from
/// fixed text, field names, positions and the API server's answer about
/// the Secret, never from the Secret's data.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigProblem {
    /// The Secret does not exist (it is read again next time).
    #[error("the Secret does not exist")]
    SecretNotFound,
    /// The Secret could not be read: the API server refused (RBAC) or could
    /// not be reached.
    #[error("cannot read the Secret: {0}")]
    SecretUnreadable(String),
    /// The Secret lacks the key (for the default key: and `value.yaml`).
    #[error("the Secret has no such key{}", if *.fallback { " (nor value.yaml)" } else { "" })]
    KeyNotFound {
        /// Whether `value.yaml` was looked for too.
        fallback: bool,
    },
    /// The data is not a kubeconfig.
    #[error("not a kubeconfig: {0}")]
    NotKubeconfig(&'static str),
    /// A user runs a program for its credentials.
    #[error(
        "{0} runs a program (exec) for its credentials, which the operator refuses: \
         put a token or a client certificate and key in the kubeconfig"
    )]
    ExecRefused(Entry),
    /// A user needs an auth-provider plugin.
    #[error(
        "{0} uses an auth-provider, which the operator refuses: \
         put a token or a client certificate and key in the kubeconfig"
    )]
    AuthProviderRefused(Entry),
    /// A cluster or user reads a file.
    #[error(
        "{entry} reads {field} from a file, which the operator refuses: \
         put it inline as {inline}"
    )]
    FileRefused {
        /// Where.
        entry: Entry,
        /// The field naming a path.
        field: &'static str,
        /// The field to use instead.
        inline: &'static str,
    },
    /// A cluster skips TLS verification.
    #[error(
        "{0} sets insecure-skip-tls-verify, which the operator refuses: \
         give the cluster's CA as certificate-authority-data"
    )]
    InsecureRefused(Entry),
    /// No current-context, or one that names no context.
    #[error("{0}")]
    NoCurrentContext(&'static str),
    /// The current context's cluster is missing or has no usable server.
    #[error("{0}")]
    NoServer(&'static str),
    /// Inline data that is not what its field needs, or TLS settings that
    /// cannot work.
    #[error("{0}")]
    InvalidData(&'static str),
}

/// A client for the cluster of the kubeconfig in Secret `namespace/name`,
/// under `key` (Flux's default [`DEFAULT_KEY`]; an empty key is the
/// default, which also accepts `value.yaml` when `value` is absent), with
/// the kubeconfig's current context. One `get` of the Secret with
/// `client`; the remote cluster is not contacted.
pub async fn client_from_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Remote, KubeconfigError> {
    let key = if key.is_empty() { DEFAULT_KEY } else { key };
    let failed = |problem| KubeconfigError {
        secret: name.to_string(),
        key: key.to_string(),
        problem,
    };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| failed(unreadable(&e)))?
        .ok_or_else(|| failed(KubeconfigProblem::SecretNotFound))?;
    let data = kubeconfig_data(&secret, key).map_err(failed)?;
    remote_from_kubeconfig(data).await.map_err(failed)
}

/// What a failed `get` says, without anything of the answer's body but
/// the API server's own status.
fn unreadable(error: &kube::Error) -> KubeconfigProblem {
    let why = match error {
        kube::Error::Api(status) => format!(
            "the API server answered {} {}: {}",
            status.code, status.reason, status.message
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            format!("the API server cannot be reached ({error})")
        }
        kube::Error::SerdeError(_) => "the API server's answer is not a Secret".to_string(),
        _ => "the request failed".to_string(),
    };
    KubeconfigProblem::SecretUnreadable(why)
}

/// The kubeconfig's bytes under `key` of `secret`; for the default key,
/// `value.yaml` when `value` is absent.
fn kubeconfig_data<'a>(secret: &'a Secret, key: &str) -> Result<&'a [u8], KubeconfigProblem> {
    let data = secret.data.as_ref();
    let read = |key: &str| data.and_then(|d| d.get(key)).map(|v| v.0.as_slice());
    let fallback = key == DEFAULT_KEY;
    read(key)
        .or_else(|| fallback.then(|| read(DEFAULT_KEY_YAML)).flatten())
        .ok_or(KubeconfigProblem::KeyNotFound { fallback })
}

/// A client from a kubeconfig's bytes: parsed, refused if it would run a
/// program, read a file or skip TLS verification, and built for its
/// current context. Connects to nothing.
async fn remote_from_kubeconfig(data: &[u8]) -> Result<Remote, KubeconfigProblem> {
    let kubeconfig = parse(data)?;
    refuse_programs_and_files(&kubeconfig)?;
    let server = current_server(&kubeconfig)?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(config_problem)?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(READ_TIMEOUT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("strata/", env!("CARGO_PKG_VERSION"))),
    ));
    let client = Client::try_from(config).map_err(client_problem)?;
    Ok(Remote { client, server })
}

/// The kubeconfig in `data`. The parser's own message is dropped: it
/// quotes the text around a syntax error.
fn parse(data: &[u8]) -> Result<Kubeconfig, KubeconfigProblem> {
    let text = std::str::from_utf8(data)
        .map_err(|_| KubeconfigProblem::NotKubeconfig("it is not UTF-8 text"))?;
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|_| {
        KubeconfigProblem::NotKubeconfig("it does not parse as the YAML of a kubeconfig")
    })?;
    if kubeconfig.kind.as_deref().is_some_and(|k| k != "Config") {
        return Err(KubeconfigProblem::NotKubeconfig("its kind is not Config"));
    }
    Ok(kubeconfig)
}

/// Refuses every cluster and user, used by the current context or not,
/// that would make the operator run a program, read one of its files or
/// trust any server.
fn refuse_programs_and_files(kubeconfig: &Kubeconfig) -> Result<(), KubeconfigProblem> {
    let file = |entry, field, inline| KubeconfigProblem::FileRefused {
        entry,
        field,
        inline,
    };
    for (i, named) in kubeconfig.clusters.iter().enumerate() {
        let Some(cluster) = &named.cluster else {
            continue;
        };
        let entry = Entry::Cluster(i);
        if cluster.certificate_authority.is_some() {
            return Err(file(
                entry,
                "certificate-authority",
                "certificate-authority-data",
            ));
        }
        if cluster.insecure_skip_tls_verify == Some(true) {
            return Err(KubeconfigProblem::InsecureRefused(entry));
        }
    }
    for (i, named) in kubeconfig.auth_infos.iter().enumerate() {
        let Some(user) = &named.auth_info else {
            continue;
        };
        let entry = Entry::User(i);
        if user.exec.is_some() {
            return Err(KubeconfigProblem::ExecRefused(entry));
        }
        if user.auth_provider.is_some() {
            return Err(KubeconfigProblem::AuthProviderRefused(entry));
        }
        if user.client_certificate.is_some() {
            return Err(file(entry, "client-certificate", "client-certificate-data"));
        }
        if user.client_key.is_some() {
            return Err(file(entry, "client-key", "client-key-data"));
        }
        if user.token_file.is_some() {
            return Err(file(entry, "tokenFile", "token"));
        }
    }
    Ok(())
}

/// The server of the current context's cluster: an https URL without
/// credentials in it (the token of an http URL would cross the network in
/// clear text).
fn current_server(kubeconfig: &Kubeconfig) -> Result<String, KubeconfigProblem> {
    use KubeconfigProblem::{NoCurrentContext, NoServer};
    let name = kubeconfig
        .current_context
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(NoCurrentContext("it sets no current-context"))?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or(NoCurrentContext(
            "its current-context names no entry of its contexts",
        ))?;
    let server = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or(NoServer(
            "its current context names no entry of its clusters",
        ))?
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(NoServer("the cluster of its current context has no server"))?;
    let uri: http::Uri = server
        .parse()
        .map_err(|_| NoServer("the server of its current context is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(NoServer(
            "the server of its current context is not an https URL",
        ));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(NoServer(
            "the server of its current context carries credentials in its URL, \
             which the operator refuses: they would be recorded as evidence",
        ));
    }
    Ok(server.trim_end_matches('/').to_string())
}

const CA_INVALID: &str = "its certificate-authority-data is not base64 of PEM certificates";

/// kube's reasons, named by field: its messages quote the data (a base64
/// error gives the offending byte and its offset).
fn config_problem(error: kube::config::KubeconfigError) -> KubeconfigProblem {
    use kube::config::KubeconfigError as E;
    match error {
        E::CurrentContextNotSet | E::LoadContext(_) => {
            KubeconfigProblem::NoCurrentContext("its current context cannot be loaded")
        }
        E::LoadClusterOfContext(_) | E::MissingClusterUrl | E::ParseClusterUrl(_) => {
            KubeconfigProblem::NoServer("the cluster of its current context cannot be loaded")
        }
        E::LoadCertificateAuthority(_) | E::ParseCertificates(_) => {
            KubeconfigProblem::InvalidData(CA_INVALID)
        }
        E::LoadClientCertificate(_) => {
            KubeconfigProblem::InvalidData("its client-certificate-data is not base64 of PEM")
        }
        E::LoadClientKey(_) => {
            KubeconfigProblem::InvalidData("its client-key-data is not base64 of PEM")
        }
        E::ParseProxyUrl(_) => KubeconfigProblem::InvalidData("its proxy-url is not a URL"),
        _ => KubeconfigProblem::NotKubeconfig("it cannot be loaded"),
    }
}

/// Why the client could not be built: its credentials and TLS settings, by
/// field.
fn client_problem(error: kube::Error) -> KubeconfigProblem {
    use kube::client::RustlsTlsError as Tls;
    match error {
        kube::Error::RustlsTls(Tls::AddRootCertificate(_)) => {
            KubeconfigProblem::InvalidData(CA_INVALID)
        }
        kube::Error::RustlsTls(Tls::NoValidNativeRootCA(_)) => KubeconfigProblem::InvalidData(
            "it has no certificate-authority-data, and the system trusts no root CA",
        ),
        kube::Error::RustlsTls(Tls::InvalidServerName(_)) => KubeconfigProblem::InvalidData(
            "the host of its server (or its tls-server-name) is not a valid TLS server name",
        ),
        kube::Error::RustlsTls(_) => KubeconfigProblem::InvalidData(
            "its client-certificate-data and client-key-data are not a PEM certificate and its private key",
        ),
        // The client certificate and key are loaded only now.
        kube::Error::InferKubeconfig(e) => config_problem(e),
        _ => KubeconfigProblem::NotKubeconfig("no client can be built from it"),
    }
}

#[cfg(test)]
mod tests;
