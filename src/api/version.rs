//! Version requirements as every Strata kind reads them: the `stackRef`,
//! `dependsOn` and chain hop `version` fields. Parsed in one place, so a
//! requirement is refused with the same words wherever it is written.

use semver::VersionReq;

/// A version requirement that is not a semver requirement.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error(
    "{field}: {text:?} is not a semver requirement ({reason}); use e.g. \">=1.4, <2\", \"^2.3\", \"=1.4.0\" or \"*\""
)]
pub struct InvalidRequirement {
    /// The field, e.g. `spec.hops[0].version`.
    pub field: String,
    /// The text of the field.
    pub text: String,
    /// What the semver parser objected to.
    pub reason: String,
}

/// Parses the requirement `text` of `field` exactly as Cargo reads one
/// (`">=1.4, <2"`, `"^2.3"`); the error names the field.
pub fn requirement(field: &str, text: &str) -> Result<VersionReq, InvalidRequirement> {
    VersionReq::parse(text).map_err(|e| InvalidRequirement {
        field: field.to_string(),
        text: text.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_requirement_names_the_field_and_the_text() {
        assert_eq!(
            requirement("spec.hops[1].version", ">=one")
                .unwrap_err()
                .to_string(),
            r#"spec.hops[1].version: ">=one" is not a semver requirement (unexpected character 'o' while parsing major version number); use e.g. ">=1.4, <2", "^2.3", "=1.4.0" or "*""#
        );
        assert_eq!(
            requirement("spec.stackRef.version", ">=1.4, <2").unwrap(),
            VersionReq::parse(">=1.4, <2").unwrap()
        );
    }
}
