//! Specs that cannot be rendered, with the exact error a user sees.

use super::*;

const IMAGE: &str =
    "registry.example/upf@sha256:4b1e0a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";

#[test]
fn invalid_config_keys_are_refused() {
    let long = "k".repeat(254);
    for key in ["a/b", "..data", ".", "..", "with space", "é", long.as_str()] {
        let nf = UPF.replace("{upf.yaml:", &format!("{{{key:?}:"));
        assert_eq!(
            desired(&function(&nf), &edge_net(), &[])
                .unwrap_err()
                .to_string(),
            format!(
                "spec.config has the key {key:?}, which is not a valid ConfigMap key; use at most 253 letters, digits, '-', '_' and '.' (not \".\" or \"..\", not starting with \"..\")"
            )
        );
    }
    for key in [".hidden", "a..b", "UPF_1.yaml", "k".repeat(253).as_str()] {
        let nf = UPF.replace("{upf.yaml:", &format!("{{{key:?}:"));
        assert!(desired(&function(&nf), &edge_net(), &[]).is_ok(), "{key}");
    }
}

#[test]
fn duplicate_ports_are_refused() {
    let nf = UPF.replace(
        "{name: metrics, port: 9090}",
        "{name: gtpu2, port: 2152, protocol: UDP}",
    );
    assert_eq!(
        desired(&function(&nf), &edge_net(), &[])
            .unwrap_err()
            .to_string(),
        "spec.ports \"gtpu\" and \"gtpu2\" both use UDP port 2152; give each port its own number"
    );
    // The same number over another protocol is another port.
    let nf = UPF.replace(
        "{name: metrics, port: 9090}",
        "{name: gtpu-tcp, port: 2152}",
    );
    assert!(desired(&function(&nf), &edge_net(), &[]).is_ok());
}

#[test]
fn objects_not_from_the_api_server_are_refused() {
    let mut nf = function(UPF);
    nf.metadata.uid = None;
    assert_eq!(
        desired(&nf, &edge_net(), &[]),
        Err(RenderError::MissingMetadata("metadata.uid"))
    );
    nf.metadata.namespace = None;
    assert_eq!(
        desired(&nf, &edge_net(), &[]),
        Err(RenderError::MissingMetadata("metadata.namespace"))
    );
}

#[test]
fn image_pinning() {
    let hex = &IMAGE[IMAGE.len() - 64..];
    for (image, pinned) in [
        (IMAGE.to_string(), true),
        (format!("upf@sha256:{hex}"), true),
        (format!("registry:5000/upf:2.3.1@sha256:{hex}"), true),
        ("registry.example/upf:2.3.1".into(), false),
        ("upf".into(), false),
        (format!("@sha256:{hex}"), false),
        (format!("upf@sha256:{}", &hex[1..]), false),
        (format!("upf@sha256:{hex}0"), false),
        (format!("upf@sha256:{}", hex.to_uppercase()), false),
        (format!("upf@sha512:{hex}{hex}"), false),
        (format!("upf:sha256:{hex}"), false),
    ] {
        assert_eq!(image_pinned(&image), pinned, "{image}");
    }
}
