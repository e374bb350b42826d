//! Promotion gates: where a function's artifact must have run, and for how
//! long, before it rolls out here; and the evidence its record keeps.

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where the same artifact must have run before this function rolls it out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// Upstream environments that must each have verified the artifact: the
    /// same function version and image (pinned by digest) on the same Stack
    /// name and version, Succeeded there and run for at least `soak`.
    #[schemars(length(min = 1, max = 8))]
    pub require_verified_in: Vec<UpstreamRequirement>,
}

/// One upstream environment the artifact must have been verified in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRequirement {
    /// The namespace the artifact must have run in.
    #[x_kube(validation = super::rules::dns_label())]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The NetworkFunction there; default: this function's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::rules::dns_label())]
    #[schemars(length(min = 1, max = 63))]
    pub network_function: Option<String>,
    /// How long the artifact must have run there, Succeeded and without
    /// interruption, as a Go duration (`30m`, `1h30m`, `90s`). Default 0s.
    #[serde(default = "zero")]
    #[x_kube(validation = super::rules::duration())]
    #[schemars(length(max = 32))]
    pub soak: String,
    /// That environment is another cluster: a kubeConfig Secret for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_config: Option<KubeConfigReference>,
}

impl UpstreamRequirement {
    /// The upstream function's name, given the name of the function that requires it.
    pub fn function<'a>(&'a self, own: &'a str) -> &'a str {
        self.network_function.as_deref().unwrap_or(own)
    }
}

/// A kubeconfig for another cluster, as Flux's `kubeConfig`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KubeConfigReference {
    /// The Secret, in the function's namespace, holding the kubeconfig. It
    /// needs only read access to DeploymentRecords upstream; exec plugins and
    /// file references are refused.
    pub secret_ref: SecretKeyReference,
}

/// A key of a Secret in the same namespace.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret.
    #[x_kube(validation = super::rules::dns_subdomain())]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the kubeconfig (default `value`, as Flux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// The evidence a gated rollout was verified by, kept in its record.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The upstream API server's URL; empty for this cluster.
    #[serde(default)]
    pub cluster: String,
    /// The upstream namespace.
    pub namespace: String,
    /// The upstream DeploymentRecord of the same artifact.
    pub record: String,
    /// How long it had run there, Succeeded, when this rollout started.
    pub soaked: String,
}

fn zero() -> String {
    "0s".into()
}

/// A Go duration (`1h30m`, `90s`, `1.5s`, `250ms`) as the schema accepts it.
pub const DURATION: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Parses a Go duration as [`DURATION`] describes it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("{s:?} is not a duration such as 90s, 30m or 1h30m");
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let number: f64 = number.parse().map_err(|_| invalid())?;
        let seconds = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// A duration as Go prints one, to the second: `1h2m3s`, `4m0s`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("0s", 0.0),
            ("90s", 90.0),
            ("30m", 1800.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("250ms", 0.25),
            ("2h0m10s", 7210.0),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(seconds)),
                "{text}"
            );
        }
        for bad in ["", "5", "m", "1d", "1h-5m", "1..5s", "s5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(240)), "4m0s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_duration(Duration::from_millis(1999)), "1s");
    }
}
