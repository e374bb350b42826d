//! Admission-time validation shared by the kinds: CEL rules and schema fragments.
//!
//! CEL regular expressions are RE2. Each rule carries a message that names what
//! is expected, because the API server prefixes it with the field path.
//!
//! The version and requirement patterns accept exactly what the `semver` crate
//! the controllers use parses (see the properties in `rules/properties.rs`),
//! so that admission never accepts what a reconcile then refuses. The one
//! difference is on the safe side: a numeric identifier has at most 19 digits,
//! which always fit the crate's `u64` (some 20-digit numbers would overflow).

use kube::core::{Rule, cel::Message};

/// A numeric identifier: no leading zero, at most 19 digits.
macro_rules! number {
    () => {
        r"(0|[1-9][0-9]{0,18})"
    };
}

/// A pre-release: dot-separated identifiers; a numeric one has no leading zero.
macro_rules! prerelease {
    () => {
        r"(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)"
    };
}

/// Build metadata: dot-separated identifiers of letters, digits and '-'.
macro_rules! build {
    () => {
        r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)"
    };
}

/// One comparator of a requirement, as Cargo reads them: an optional
/// operator, then `1`, `1.4`, `1.4.0` (with pre-release and build), or
/// wildcards after the major version (`1.*`, `1.x.x`, `1.4.*`; a wildcard
/// is never followed by a number). Only spaces count as white space.
macro_rules! comparator {
    () => {
        concat!(
            r"(=|>=|<=|>|<|~|\^)? *",
            number!(),
            r"(\.([*xX](\.[*xX])?|",
            number!(),
            r"(\.([*xX]|",
            number!(),
            prerelease!(),
            "?",
            build!(),
            "?))?))?"
        )
    };
}

/// A semantic version: `MAJOR.MINOR.PATCH`, optional pre-release and build metadata.
pub const SEMVER: &str = concat!(
    "^",
    number!(),
    r"\.",
    number!(),
    r"\.",
    number!(),
    prerelease!(),
    "?",
    build!(),
    "?$"
);

/// A semver requirement: a lone wildcard (`*`, `x`), or comma-separated
/// comparators (`">=1.4, <2"`); wildcards cannot be combined with comparators.
pub const REQUIREMENT: &str = concat!(
    r"^ *([*xX]|",
    comparator!(),
    " *(, *",
    comparator!(),
    " *)*) *$"
);

/// A requirement with more comparators than the `semver` crate accepts (32):
/// 32 commas or more.
pub const TOO_MANY_COMPARATORS: &str = "^([^,]*,){32}";

/// A DNS-1123 label: a Kubernetes object name usable as a Service name too.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 subdomain: the general Kubernetes object name.
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

fn rule(expr: String, message: &str) -> Rule {
    Rule::new(expr).message(Message::Message(message.to_string()))
}

/// The field must be a semantic version.
pub fn semver() -> Rule {
    rule(
        format!("self.matches('{}')", escape(SEMVER)),
        "must be a semantic version MAJOR.MINOR.PATCH, such as 1.4.0",
    )
}

/// The field must be a concurrency budget: an integer of at least 1 or a
/// percentage from 1% to 100%.
pub fn max_concurrent() -> Rule {
    rule(
        "type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')".into(),
        "must be an integer of at least 1 or a percentage from 1% to 100%",
    )
}

/// The field must be a failure budget: an integer of at least 0 or a
/// percentage from 0% to 100%.
pub fn max_failures() -> Rule {
    rule(
        "type(self) == int ? self >= 0 : self.matches('^([0-9]|[1-9][0-9]|100)%$')".into(),
        "must be an integer of at least 0 or a percentage from 0% to 100%",
    )
}

/// The field must be a semver requirement.
pub fn requirement() -> Rule {
    rule(
        format!(
            "self.matches('{}') && !self.matches('{}')",
            escape(REQUIREMENT),
            escape(TOO_MANY_COMPARATORS)
        ),
        "must be a semver requirement such as \">=1.4, <2\", \"^2.3\", \"=1.4.0\" or \"*\"",
    )
}

/// The field must name an object by DNS-1123 label.
pub fn dns_label() -> Rule {
    rule(
        format!("self.matches('{}')", escape(DNS_LABEL)),
        "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit",
    )
}

/// The field must name an object by DNS-1123 subdomain.
pub fn dns_subdomain() -> Rule {
    rule(
        format!("self.matches('{}')", escape(DNS_SUBDOMAIN)),
        "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
    )
}

/// The field must be a Go duration such as `90s`, `30m` or `1h30m`.
pub fn duration() -> Rule {
    rule(
        format!("self.matches('{}')", escape(super::promotion::DURATION)),
        "must be a duration such as 90s, 30m or 1h30m",
    )
}

/// Escapes a regular expression for a single-quoted CEL string literal.
fn escape(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// The schema's patterns (RE2) and the semver crate the controllers use
    /// must agree, or admission would accept what reconcile then refuses.
    #[test]
    fn semver_pattern_agrees_with_semver_crate() {
        let re = Regex::new(SEMVER).unwrap();
        for v in [
            "1.4.0",
            "0.0.1",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0+build.5",
            "1.0.0-alpha-1+b",
            "1.4",
            "v1.4.0",
            "01.4.0",
            "1.4.0-",
            "",
            " 1.4.0",
            "1.4.0.1",
            "a.b.c",
        ] {
            assert_eq!(
                re.is_match(v),
                semver::Version::parse(v).is_ok(),
                "pattern and semver crate disagree on {v:?}"
            );
        }
    }

    #[test]
    fn requirement_pattern_agrees_with_semver_crate() {
        let re = Regex::new(REQUIREMENT).unwrap();
        for r in [
            "*",
            ">=1.4, <2",
            "^2.3",
            "=1.4.0",
            "~1.2",
            "1.x",
            ">=1.0.0-rc.1",
            "<2",
            " >= 1.4 , < 2 ",
            "1.*",
            ">=3",
            "",
            "latest",
            ">=1.4 <2",
            "=>1",
            "1.4.0.0",
            ">=1.4,",
            ",",
            "^",
            "v1",
        ] {
            assert_eq!(
                re.is_match(r),
                semver::VersionReq::parse(r).is_ok(),
                "pattern and semver crate disagree on {r:?}"
            );
        }
    }

    #[test]
    fn names() {
        let label = Regex::new(DNS_LABEL).unwrap();
        assert!(label.is_match("edge-net"));
        assert!(!label.is_match("Edge"));
        assert!(!label.is_match("-edge"));
        assert!(!label.is_match("edge.net"));
        assert!(Regex::new(DNS_SUBDOMAIN).unwrap().is_match("edge.net"));
    }

    #[test]
    fn rules_escape_backslashes_for_cel() {
        assert!(semver().rule.contains(r"\\."), "{}", semver().rule);
    }
}

#[cfg(test)]
mod properties;
