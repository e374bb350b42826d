use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use k8s_openapi::ByteString;
use kube::client::Body;
use tower_test::mock;

use super::*;

/// What the credentials of the fixtures hold: none of it may ever show in
/// an error.
const TOKEN: &str = "tok-7f3a9c-UPSTREAM-TOKEN-never-print";
const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nKEYMATERIAL-never-print\n-----END PRIVATE KEY-----\n";
const CERT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nCERTMATERIAL-never-print\n-----END CERTIFICATE-----\n";
const PASSWORD: &str = "pw-never-print";
const PROGRAM: &str = "/usr/local/bin/steal-never-print";
const PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/never-print";
const SERVER: &str = "https://upstream.example:6443";

/// A throwaway self-signed CA certificate (its key was discarded): a CA
/// bundle that parses.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUYa9GqtED815h95pYcmBiMFYanp0wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOc3RyYXRhLXRlc3QtY2EwIBcNMjYxMTI5MDYwOTUyWhgPMjEy
NjExMDUwNjA5NTJaMBkxFzAVBgNVBAMMDnN0cmF0YS10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAExPZ9kFTW3I+FpV6bYRvWyII3iJXoItTshXbfuhAs
AOZ3F8pAw4FdfKzb+1S59TvwTWNNng5Xodo+KDpTTmLG0aNTMFEwHQYDVR0OBBYE
FFpi02emfZPrtos2n84k8rtp+5sYMB8GA1UdIwQYMBaAFFpi02emfZPrtos2n84k
8rtp+5sYMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIga4HgdTzW
Bl/VUcubbHwKiLCEygW5ik6a2sc6qSFB4HYCIQD/WRAXlcJ3MqJZ93XtCMBPzAji
3NmuWNffAb0OwZKxKQ==
-----END CERTIFICATE-----
";

/// `bytes` in base64, as a kubeconfig's `*-data` fields hold them (the
/// encoding of a Secret's data is the same).
fn base64(bytes: &[u8]) -> String {
    serde_json::to_value(ByteString(bytes.to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// Everything an error must not contain, in clear and in base64.
fn never_shown() -> Vec<String> {
    let mut secrets: Vec<String> = [TOKEN, KEY_PEM, CERT_PEM, PASSWORD, PROGRAM, PATH]
        .iter()
        .map(|s| s.to_string())
        .collect();
    secrets.extend(["KEYMATERIAL", "CERTMATERIAL", "never-print"].map(String::from));
    for clear in [KEY_PEM, CERT_PEM, CA_PEM, TOKEN] {
        secrets.push(base64(clear.as_bytes()));
    }
    secrets.push(base64(CA_PEM.as_bytes())[..40].to_string());
    secrets
}

/// Fails when the error, as shown or debugged, holds any credential.
fn assert_shows_nothing_secret(error: &KubeconfigError) {
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        format!("{error:#?}"),
    ] {
        for secret in never_shown() {
            assert!(
                !shown.contains(&secret),
                "the error shows {secret:?}: {shown}"
            );
        }
    }
}

/// A kubeconfig with one cluster, one user and a current context naming
/// them; `cluster` and `user` are the lines of their maps (four spaces in).
/// The user holds the token and the client key, so that every error path
/// meets them.
fn kubeconfig(cluster: &str, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: upstream
  cluster:
{cluster}
users:
- name: verifier
  user:
    token: {TOKEN}
{user}
contexts:
- name: upstream
  context:
    cluster: upstream
    user: verifier
current-context: upstream
"
    )
}

/// The cluster lines of a valid kubeconfig.
fn good_cluster() -> String {
    format!(
        "    server: {SERVER}\n    certificate-authority-data: {}",
        base64(CA_PEM.as_bytes())
    )
}

fn failed(problem: KubeconfigProblem) -> KubeconfigError {
    KubeconfigError {
        secret: "staging-kubeconfig".into(),
        key: "value".into(),
        problem,
    }
}

async fn problem_of(yaml: &str) -> KubeconfigProblem {
    remote_from_kubeconfig(yaml.as_bytes())
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn an_inline_kubeconfig_gives_a_client_for_its_server() {
    let remote = remote_from_kubeconfig(kubeconfig(&good_cluster(), "").as_bytes())
        .await
        .expect("a client");
    assert_eq!(remote.server, SERVER);
    assert!(!format!("{remote:?}").contains(TOKEN));

    let trailing = good_cluster().replace(SERVER, &format!("{SERVER}/"));
    let remote = remote_from_kubeconfig(kubeconfig(&trailing, "").as_bytes())
        .await
        .expect("a client");
    assert_eq!(remote.server, SERVER, "recorded without the trailing /");
}

/// Each way a kubeconfig is refused or unusable, with the message a user
/// sees (after `secret staging-kubeconfig key value: `), none of which
/// shows a credential.
#[tokio::test]
async fn refused_and_broken_kubeconfigs_say_why_without_their_content() {
    let good = good_cluster();
    let exec = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {PROGRAM}\n      args: [{TOKEN}]"
    );
    let auth_provider =
        format!("    auth-provider:\n      name: oidc\n      config: {{id-token: {TOKEN}}}");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "exec",
            kubeconfig(&good, &exec),
            "users[0] runs a program (exec) for its credentials, which the operator refuses: \
             put a token or a client certificate and key in the kubeconfig",
        ),
        (
            "auth-provider",
            kubeconfig(&good, &auth_provider),
            "users[0] uses an auth-provider, which the operator refuses: \
             put a token or a client certificate and key in the kubeconfig",
        ),
        (
            "certificate-authority file",
            kubeconfig(
                &format!("    server: {SERVER}\n    certificate-authority: {PATH}"),
                "",
            ),
            "clusters[0] reads certificate-authority from a file, which the operator refuses: \
             put it inline as certificate-authority-data",
        ),
        (
            "client-certificate file",
            kubeconfig(
                &good,
                &format!(
                    "    client-certificate: {PATH}\n    client-key-data: {}",
                    base64(KEY_PEM.as_bytes())
                ),
            ),
            "users[0] reads client-certificate from a file, which the operator refuses: \
             put it inline as client-certificate-data",
        ),
        (
            "client-key file",
            kubeconfig(
                &good,
                &format!(
                    "    client-certificate-data: {}\n    client-key: {PATH}",
                    base64(CERT_PEM.as_bytes())
                ),
            ),
            "users[0] reads client-key from a file, which the operator refuses: \
             put it inline as client-key-data",
        ),
        (
            "tokenFile",
            kubeconfig(&good, &format!("    tokenFile: {PATH}")),
            "users[0] reads tokenFile from a file, which the operator refuses: \
             put it inline as token",
        ),
        (
            "insecure-skip-tls-verify",
            kubeconfig(
                &format!("    server: {SERVER}\n    insecure-skip-tls-verify: true"),
                "",
            ),
            "clusters[0] sets insecure-skip-tls-verify, which the operator refuses: \
             give the cluster's CA as certificate-authority-data",
        ),
        (
            "exec on a user no context names",
            kubeconfig(&good, "").replace(
                "contexts:",
                &format!("- name: spare\n  user:\n{exec}\ncontexts:"),
            ),
            "users[1] runs a program (exec) for its credentials, which the operator refuses: \
             put a token or a client certificate and key in the kubeconfig",
        ),
        (
            "YAML that does not parse, around the token",
            format!("users:\n- name: x\n  user: {{token: {TOKEN}\n    ]] {PASSWORD}"),
            "not a kubeconfig: it does not parse as the YAML of a kubeconfig",
        ),
        (
            "a token alone",
            TOKEN.to_string(),
            "not a kubeconfig: it does not parse as the YAML of a kubeconfig",
        ),
        (
            "another kind",
            kubeconfig(&good, "").replace("kind: Config", "kind: Secret"),
            "not a kubeconfig: its kind is not Config",
        ),
        (
            "no current-context",
            kubeconfig(&good, "").replace("current-context: upstream\n", ""),
            "it sets no current-context",
        ),
        (
            "a current-context that names no context",
            kubeconfig(&good, "").replace("current-context: upstream", "current-context: gone"),
            "its current-context names no entry of its contexts",
        ),
        (
            "a context that names no cluster",
            kubeconfig(&good, "").replace("    cluster: upstream", "    cluster: gone"),
            "its current context names no entry of its clusters",
        ),
        (
            "no server",
            kubeconfig(
                &format!(
                    "    certificate-authority-data: {}",
                    base64(CA_PEM.as_bytes())
                ),
                "",
            ),
            "the cluster of its current context has no server",
        ),
        (
            "a server that is no URL",
            kubeconfig(&good.replace(SERVER, &format!("https://{TOKEN} x")), ""),
            "the server of its current context is not a URL",
        ),
        (
            "a plain-http server",
            kubeconfig(&good.replace("https://", "http://"), ""),
            "the server of its current context is not an https URL",
        ),
        (
            "credentials in the server URL",
            kubeconfig(
                &good.replace("https://", &format!("https://verifier:{PASSWORD}@")),
                "",
            ),
            "the server of its current context carries credentials in its URL, \
             which the operator refuses: they would be recorded as evidence",
        ),
        (
            "certificate-authority-data that is not base64",
            kubeconfig(
                &format!("    server: {SERVER}\n    certificate-authority-data: {TOKEN}!"),
                "",
            ),
            "its certificate-authority-data is not base64 of PEM certificates",
        ),
        (
            "certificate-authority-data that is not a certificate",
            kubeconfig(
                &format!(
                    "    server: {SERVER}\n    certificate-authority-data: {}",
                    base64(CERT_PEM.as_bytes())
                ),
                "",
            ),
            "its certificate-authority-data is not base64 of PEM certificates",
        ),
        (
            "client-key-data that is not base64",
            kubeconfig(
                &good,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {TOKEN}!",
                    base64(CERT_PEM.as_bytes())
                ),
            ),
            "its client-key-data is not base64 of PEM",
        ),
        (
            "a client certificate and key that are not PEM of either",
            kubeconfig(
                &good,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {}",
                    base64(CERT_PEM.as_bytes()),
                    base64(KEY_PEM.as_bytes())
                ),
            ),
            "its client-certificate-data and client-key-data are not a PEM certificate \
             and its private key",
        ),
    ];
    for (case, yaml, message) in cases {
        let error = failed(problem_of(&yaml).await);
        assert_shows_nothing_secret(&error);
        assert_eq!(
            error.to_string(),
            format!("secret staging-kubeconfig key value: {message}"),
            "{case}"
        );
    }

    let error = failed(problem_of_bytes(&[0xff, 0xfe, b'a']).await);
    assert_eq!(
        error.to_string(),
        "secret staging-kubeconfig key value: not a kubeconfig: it is not UTF-8 text"
    );
}

async fn problem_of_bytes(data: &[u8]) -> KubeconfigProblem {
    remote_from_kubeconfig(data).await.expect_err("refused")
}

fn secret(data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("staging-kubeconfig".into()),
            namespace: Some("prod".into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

#[test]
fn the_default_key_falls_back_to_value_yaml_as_in_flux() {
    let both = secret(&[("value", "a"), ("value.yaml", "b")]);
    assert_eq!(kubeconfig_data(&both, DEFAULT_KEY), Ok(&b"a"[..]));
    let yaml_only = secret(&[("value.yaml", "b")]);
    assert_eq!(kubeconfig_data(&yaml_only, DEFAULT_KEY), Ok(&b"b"[..]));
    assert_eq!(
        kubeconfig_data(&yaml_only, "kubeconfig"),
        Err(KubeconfigProblem::KeyNotFound { fallback: false }),
        "a key the user named has no fallback"
    );
    let other = secret(&[("kubeconfig", "c")]);
    assert_eq!(kubeconfig_data(&other, "kubeconfig"), Ok(&b"c"[..]));
    assert_eq!(
        kubeconfig_data(&other, DEFAULT_KEY),
        Err(KubeconfigProblem::KeyNotFound { fallback: true })
    );
    let empty = Secret::default();
    assert_eq!(
        kubeconfig_data(&empty, DEFAULT_KEY),
        Err(KubeconfigProblem::KeyNotFound { fallback: true })
    );
}

/// What the mock API server answers to the one request it expects.
enum Answer {
    Secret(Box<Secret>),
    Status(StatusCode, &'static str),
    Unreachable,
}

/// A client whose API server answers every request with `answer`, and the
/// requests it was sent (`"GET /path"`).
fn api_server(answer: Answer) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = server.next_request().await {
            log.lock()
                .unwrap()
                .push(format!("{} {}", request.method(), request.uri()));
            let (status, body) = match &answer {
                Answer::Secret(secret) => (StatusCode::OK, serde_json::to_value(secret).unwrap()),
                Answer::Status(code, reason) => (
                    *code,
                    serde_json::json!({
                        "apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "code": code.as_u16(), "reason": reason,
                        "message": format!("secrets \"staging-kubeconfig\" is {}", reason.to_lowercase()),
                    }),
                ),
                Answer::Unreachable => {
                    respond.send_error("connection refused");
                    continue;
                }
            };
            let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap()));
            *response.status_mut() = status;
            respond.send_response(response);
        }
    });
    (Client::new(service, "default"), seen)
}

const GET_SECRET: &str = "GET /api/v1/namespaces/prod/secrets/staging-kubeconfig";

#[tokio::test]
async fn a_secret_is_read_with_one_get_and_gives_a_remote_client() {
    let yaml = kubeconfig(&good_cluster(), "");
    let (client, seen) = api_server(Answer::Secret(Box::new(secret(&[("value", &yaml)]))));
    let remote = client_from_secret(&client, "prod", "staging-kubeconfig", "value")
        .await
        .expect("a client");
    assert_eq!(remote.server, SERVER);
    assert_eq!(*seen.lock().unwrap(), [GET_SECRET]);

    // The default key, by an empty key: value.yaml when value is absent.
    let (client, _) = api_server(Answer::Secret(Box::new(secret(&[("value.yaml", &yaml)]))));
    let remote = client_from_secret(&client, "prod", "staging-kubeconfig", "")
        .await
        .expect("a client from value.yaml");
    assert_eq!(remote.server, SERVER);
}

#[tokio::test]
async fn a_secret_that_cannot_be_used_is_named_with_what_is_wrong() {
    let exec = kubeconfig(
        &good_cluster(),
        &format!("    exec:\n      command: {PROGRAM}\n      args: [{TOKEN}]"),
    );
    let cases = [
        (
            Answer::Status(StatusCode::NOT_FOUND, "NotFound"),
            "value",
            "secret staging-kubeconfig key value: the Secret does not exist",
        ),
        (
            Answer::Status(StatusCode::FORBIDDEN, "Forbidden"),
            "value",
            "secret staging-kubeconfig key value: cannot read the Secret: the API server \
             answered 403 Forbidden: secrets \"staging-kubeconfig\" is forbidden",
        ),
        (
            Answer::Unreachable,
            "value",
            "secret staging-kubeconfig key value: cannot read the Secret: the API server \
             cannot be reached (ServiceError: connection refused)",
        ),
        (
            Answer::Secret(Box::new(secret(&[("value.yaml", &exec)]))),
            "kubeconfig",
            "secret staging-kubeconfig key kubeconfig: the Secret has no such key",
        ),
        (
            Answer::Secret(Box::new(secret(&[("config", &exec)]))),
            "",
            "secret staging-kubeconfig key value: the Secret has no such key (nor value.yaml)",
        ),
        (
            Answer::Secret(Box::new(secret(&[("value", &exec)]))),
            "value",
            "secret staging-kubeconfig key value: users[0] runs a program (exec) for its \
             credentials, which the operator refuses: put a token or a client certificate \
             and key in the kubeconfig",
        ),
    ];
    for (answer, key, message) in cases {
        let (client, seen) = api_server(answer);
        let error = client_from_secret(&client, "prod", "staging-kubeconfig", key)
            .await
            .expect_err("no client");
        assert_shows_nothing_secret(&error);
        assert_eq!(error.to_string(), message);
        assert_eq!(*seen.lock().unwrap(), [GET_SECRET], "{message}");
    }
}
