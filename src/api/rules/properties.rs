//! Properties of the version and requirement patterns: on any string, the
//! RE2 patterns the API server checks at admission and the `semver` crate the
//! controllers parse with give the same answer. Where they disagree, a user
//! gets a spec admitted that every reconcile then refuses (or the reverse).

use proptest::prelude::*;
use regex::Regex;

use super::*;
use crate::api::version;

/// 256 cases by default; many more in the full fault suite (`STRATA_FAULT_FULL=1`).
fn config() -> ProptestConfig {
    let full = std::env::var_os("STRATA_FAULT_FULL").is_some_and(|v| !v.is_empty() && v != "0");
    ProptestConfig::with_cases(if full { 4096 } else { 256 })
}

fn version_rule_accepts(text: &str) -> bool {
    Regex::new(SEMVER).unwrap().is_match(text)
}

/// What the CEL rule of [`requirement`] computes.
fn requirement_rule_accepts(text: &str) -> bool {
    Regex::new(REQUIREMENT).unwrap().is_match(text)
        && !Regex::new(TOO_MANY_COMPARATORS).unwrap().is_match(text)
}

/// Whether `text` has a run of 20 digits or more: the one place where the
/// patterns are stricter than the crate on purpose (see the module docs).
fn has_long_number(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() >= 20)
}

/// Strings built from the pieces versions and requirements are made of, and
/// of the near misses users type: tabs, non-breaking spaces, `v`, leading
/// zeros, numbers around `u64::MAX`, stray operators.
fn semverish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("0"), 4 => Just("1"), 2 => Just("9"), 2 => Just("10"),
        1 => Just("00"), 1 => Just("01"),
        1 => Just("18446744073709551615"), 1 => Just("18446744073709551616"),
        1 => Just("9999999999999999999"), 1 => Just("99999999999999999999"),
        6 => Just("."), 2 => Just("-"), 2 => Just("+"), 2 => Just("*"), 1 => Just("x"),
        1 => Just("X"), 3 => Just(","), 3 => Just(" "), 1 => Just("\t"), 1 => Just("\n"),
        2 => Just(">="), 1 => Just("<="), 1 => Just(">"), 1 => Just("<"), 1 => Just("="),
        1 => Just("~"), 1 => Just("^"), 1 => Just("=>"), 2 => Just("a"), 1 => Just("rc"),
        1 => Just("v"), 1 => Just("é"), 1 => Just("\u{a0}"), 1 => Just("\u{2003}"),
        1 => Just("１"),
    ];
    prop::collection::vec(piece, 0..14).prop_map(|pieces| pieces.concat())
}

/// A numeric identifier that fits the crate's u64 and the patterns' 19 digits.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,18}"]
}

fn identifiers(numeric_without_leading_zero: bool) -> impl Strategy<Value = String> {
    let id = if numeric_without_leading_zero {
        prop_oneof!["0|[1-9][0-9]{0,5}", "[0-9]{0,3}[A-Za-z-][0-9A-Za-z-]{0,4}"].boxed()
    } else {
        "[0-9A-Za-z-]{1,6}".boxed()
    };
    prop::collection::vec(id, 1..4).prop_map(|ids| ids.join("."))
}

/// Valid versions, built from the grammar.
fn version() -> impl Strategy<Value = String> {
    (
        number(),
        number(),
        number(),
        prop::option::of(identifiers(true)),
        prop::option::of(identifiers(false)),
    )
        .prop_map(|(major, minor, patch, pre, build)| {
            let mut v = format!("{major}.{minor}.{patch}");
            if let Some(pre) = pre {
                v = format!("{v}-{pre}");
            }
            if let Some(build) = build {
                v = format!("{v}+{build}");
            }
            v
        })
}

/// Valid comparators, built from the grammar (`>= 1.4`, `~1.x`, `^1.2.3-rc.1`).
fn comparator() -> impl Strategy<Value = String> {
    let op = prop_oneof![
        Just(""),
        Just("="),
        Just(">="),
        Just("<="),
        Just(">"),
        Just("<"),
        Just("~"),
        Just("^")
    ];
    let wildcard = prop_oneof![Just("*"), Just("x"), Just("X")];
    let rest = prop_oneof![
        Just(String::new()),
        number().prop_map(|minor| format!(".{minor}")),
        (wildcard.clone(), prop::option::of(wildcard.clone())).prop_map(|(w, w2)| match w2 {
            Some(w2) => format!(".{w}.{w2}"),
            None => format!(".{w}"),
        }),
        (number(), wildcard).prop_map(|(minor, w)| format!(".{minor}.{w}")),
        version().prop_map(|v| v
            .split_once('.')
            .map(|(_, rest)| format!(".{rest}"))
            .unwrap()),
    ];
    (op, " {0,2}", number(), rest)
        .prop_map(|(op, space, major, rest)| format!("{op}{space}{major}{rest}"))
}

/// Valid requirements: a lone wildcard, or 1 to 32 comparators.
fn requirement_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => (" {0,2}", "[*xX]", " {0,2}").prop_map(|(a, w, b)| format!("{a}{w}{b}")),
        6 => (prop::collection::vec((comparator(), " {0,2}", " {0,2}"), 1..=32), " {0,2}")
            .prop_map(|(parts, lead)| {
                let joined: Vec<String> =
                    parts.into_iter().map(|(c, a, b)| format!("{a}{c}{b}")).collect();
                format!("{lead}{}", joined.join(","))
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_version_pattern_agrees_with_the_semver_crate(
        text in prop_oneof![semverish(), version(), any::<String>()]
    ) {
        let crate_accepts = semver::Version::parse(&text).is_ok();
        if has_long_number(&text) {
            prop_assert!(!version_rule_accepts(&text) || crate_accepts, "{:?}", text);
        } else {
            prop_assert_eq!(version_rule_accepts(&text), crate_accepts, "{:?}", text);
        }
    }

    #[test]
    fn valid_versions_are_accepted_by_both(text in version()) {
        prop_assert!(semver::Version::parse(&text).is_ok(), "{:?}", text);
        prop_assert!(version_rule_accepts(&text), "{:?}", text);
    }

    #[test]
    fn the_requirement_rule_agrees_with_the_semver_crate(
        text in prop_oneof![semverish(), requirement_text(), any::<String>()]
    ) {
        let crate_accepts = semver::VersionReq::parse(&text).is_ok();
        if has_long_number(&text) {
            prop_assert!(!requirement_rule_accepts(&text) || crate_accepts, "{:?}", text);
        } else {
            prop_assert_eq!(requirement_rule_accepts(&text), crate_accepts, "{:?}", text);
        }
    }

    #[test]
    fn valid_requirements_are_accepted_by_both(text in requirement_text()) {
        prop_assert!(semver::VersionReq::parse(&text).is_ok(), "{:?}", text);
        prop_assert!(requirement_rule_accepts(&text), "{:?}", text);
    }

    /// Thirty-two comparators are the most either accepts.
    #[test]
    fn comparators_are_bounded_alike(parts in prop::collection::vec(comparator(), 30..36)) {
        let text = parts.join(", ");
        prop_assert_eq!(semver::VersionReq::parse(&text).is_ok(), parts.len() <= 32);
        prop_assert_eq!(requirement_rule_accepts(&text), parts.len() <= 32);
    }

    /// What a reconcile reports for a requirement admission let through (or
    /// that predates a stricter schema): the field and the text, quoted.
    #[test]
    fn a_refused_requirement_names_the_field_and_the_text(
        text in prop_oneof![semverish(), any::<String>()]
    ) {
        match version::requirement("spec.stackRef.version", &text) {
            Ok(parsed) => prop_assert_eq!(Some(parsed), semver::VersionReq::parse(&text).ok()),
            Err(error) => {
                let message = error.to_string();
                let prefix = format!("spec.stackRef.version: {text:?} is not a semver requirement (");
                prop_assert!(message.starts_with(&prefix), "{}", message);
            }
        }
    }
}

#[test]
fn near_misses_the_old_patterns_admitted() {
    for (text, version) in [
        ("1.0.0-01", true),
        ("18446744073709551616.0.0", true),
        ("*, >=1", false),
        (">=*", false),
        ("1.x.3", false),
        ("1.2.*-rc.1", false),
        (">=1.4,\t<2", false),
        ("\u{a0}1.4", false),
    ] {
        let accepted = if version {
            version_rule_accepts(text)
        } else {
            requirement_rule_accepts(text)
        };
        assert!(!accepted, "{text:?} is admitted");
    }
    let thirty_three = vec!["1"; 33].join(",");
    assert!(!requirement_rule_accepts(&thirty_three));
    assert!(requirement_rule_accepts(&vec!["1"; 32].join(",")));
}
