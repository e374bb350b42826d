//! Operator settings: flags with `STRATA_*` environment equivalents (12-factor).

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// How `strata run` behaves. Every flag has an environment equivalent.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch (comma-separated); empty watches all namespaces.
    #[arg(long, env = "STRATA_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Reconciles that may run at once, per kind.
    #[arg(long, env = "STRATA_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Address of the metrics and health server (/metrics, /healthz, /readyz).
    #[arg(long, env = "STRATA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. "info" or "strata=debug".
    #[arg(long, env = "STRATA_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Elect a leader over a coordination.k8s.io Lease, so that only one replica reconciles.
    #[arg(long, env = "STRATA_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "STRATA_LEASE_NAME", default_value = "strata-leader")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "STRATA_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Identity of this replica in leader election (default: the host name).
    #[arg(long, env = "STRATA_IDENTITY")]
    pub identity: Option<String>,

    /// Shards the namespaces are divided into, each reconciled by its own
    /// elected replica; more than one turns leader election on.
    #[arg(long, env = "STRATA_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub shards: u32,

    /// This replica's shard, from 0 (default: the ordinal of a StatefulSet
    /// pod's name, modulo the shards).
    #[arg(long, env = "STRATA_SHARD")]
    pub shard: Option<u32>,

    /// Allow Stacks to create cluster-scoped objects and objects in other namespaces.
    #[arg(long, env = "STRATA_ALLOW_CROSS_NAMESPACE", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_cross_namespace: bool,

    /// ServiceAccount, in each Stack's namespace, that Stacks without
    /// `serviceAccountName` are applied as. Unset, they are applied as the
    /// operator: set it wherever those who may create Stacks must not get
    /// the operator's rights.
    #[arg(long, env = "STRATA_DEFAULT_SERVICE_ACCOUNT", value_parser = parse_object_name)]
    pub default_service_account: Option<String>,

    /// DeploymentRecords kept per NetworkFunction; the oldest are pruned first.
    #[arg(long, env = "STRATA_RECORD_RETENTION", default_value_t = 50)]
    pub record_retention: usize,

    /// How often a converged object is checked again (drift of Stack objects is corrected then).
    #[arg(long, env = "STRATA_RESYNC_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    pub resync_interval: Duration,
}

/// The format of log lines on stdout.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            concurrency: 16,
            metrics_addr: ([127, 0, 0, 1], 8080).into(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            leader_election: false,
            lease_name: "strata-leader".into(),
            lease_namespace: None,
            identity: None,
            shards: 1,
            shard: None,
            allow_cross_namespace: false,
            default_service_account: None,
            record_retention: 50,
            resync_interval: Duration::from_secs(300),
        }
    }
}

/// Parses "90s", "5m", "1h" or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration such as 30s, 5m or 1h")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Parses the name of an object such as a ServiceAccount: a DNS-1123
/// subdomain (lower-case letters, digits, '-' and '.', at most 253
/// characters, each dot-separated part starting and ending with a letter or
/// digit).
pub fn parse_object_name(s: &str) -> Result<String, String> {
    let part_ok = |part: &str| {
        let bytes = part.as_bytes();
        bytes
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && bytes.first().is_some_and(|c| *c != b'-')
            && bytes.last().is_some_and(|c| *c != b'-')
    };
    if s.len() <= 253 && s.split('.').all(part_ok) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not an object name: lower-case letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 253 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn object_names() {
        for good in ["stack-deployer", "a", "deployer.v2", &"a".repeat(253)] {
            assert_eq!(parse_object_name(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "",
            "Deployer",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            " a",
            &"a".repeat(254),
        ] {
            assert!(parse_object_name(bad).is_err(), "{bad:?}");
        }
    }
}
