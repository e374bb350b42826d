//! The versions a Stack applied, as its status records them: an applied
//! version is immutable, a rollback to one is not a new entry, and the
//! history is bounded by `spec.historyLimit`.

use std::collections::BTreeSet;

use crate::{
    Error, Result,
    api::{
        StackStatus,
        stack::{AppliedRevision, ManagedObject},
    },
    controllers::conditions,
    render::stack::RenderedStack,
};

/// Refuses a version whose content differs from what was applied under it.
pub(super) fn check_immutable(rendered: &RenderedStack, status: &StackStatus) -> Result<()> {
    match status
        .history
        .iter()
        .find(|h| h.version == rendered.version)
    {
        Some(applied) if applied.digest != rendered.digest => Err(Error::VersionConflict(format!(
            "version {} was applied with digest {} and its content now has digest {}; an applied version is immutable, so bump spec.version",
            rendered.version, applied.digest, rendered.digest
        ))),
        _ => Ok(()),
    }
}

/// Whether `rendered` is other content than the status says was applied.
pub(super) fn content_changed(rendered: &RenderedStack, status: &StackStatus) -> bool {
    status.digest.as_deref() != Some(rendered.digest.as_str())
        || status.version.as_deref() != Some(rendered.version.as_str())
}

/// Records in `status` that `rendered` was applied as `inventory`: the
/// objects, the outputs, the version and digest, and (when the content
/// changed) the history.
pub(super) fn record_applied(
    status: &mut StackStatus,
    rendered: RenderedStack,
    inventory: BTreeSet<ManagedObject>,
    history_limit: i32,
) {
    if content_changed(&rendered, status) {
        record_in_history(status, &rendered, history_limit);
    }
    status.inventory = inventory.into_iter().collect();
    status.outputs = rendered.outputs;
    status.version = Some(rendered.version);
    status.digest = Some(rendered.digest);
}

/// Puts the applied version first in the history (a rollback moves an earlier
/// entry to the front and keeps its first application time), keeping at most
/// `limit` entries.
fn record_in_history(status: &mut StackStatus, rendered: &RenderedStack, limit: i32) {
    let entry = match status
        .history
        .iter()
        .position(|h| h.version == rendered.version)
    {
        Some(i) => status.history.remove(i),
        None => AppliedRevision {
            version: rendered.version.clone(),
            digest: rendered.digest.clone(),
            applied_at: conditions::now_rfc3339(),
        },
    };
    status.history.insert(0, entry);
    status
        .history
        .truncate(usize::try_from(limit.max(1)).unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rendered(version: &str, digest: &str) -> RenderedStack {
        RenderedStack {
            version: version.into(),
            digest: digest.into(),
            resources: vec![],
            outputs: BTreeMap::new(),
        }
    }

    fn versions(status: &StackStatus) -> Vec<&str> {
        status.history.iter().map(|h| h.version.as_str()).collect()
    }

    #[test]
    fn an_applied_version_is_immutable_but_rollback_is_allowed() {
        let mut status = StackStatus::default();
        record_in_history(&mut status, &rendered("1.4.0", "sha256:a"), 10);
        record_in_history(&mut status, &rendered("1.5.0", "sha256:b"), 10);
        let err = check_immutable(&rendered("1.4.0", "sha256:c"), &status).unwrap_err();
        assert_eq!(err.reason(), "VersionConflict");
        let msg = err.to_string();
        assert!(
            msg.contains("1.4.0") && msg.contains("sha256:a") && msg.contains("sha256:c"),
            "{msg}"
        );
        assert!(check_immutable(&rendered("1.4.0", "sha256:a"), &status).is_ok());
        record_in_history(&mut status, &rendered("1.4.0", "sha256:a"), 10);
        assert_eq!(versions(&status), ["1.4.0", "1.5.0"]);
    }

    #[test]
    fn history_is_bounded() {
        let mut status = StackStatus::default();
        for minor in 0..5 {
            record_in_history(
                &mut status,
                &rendered(&format!("1.{minor}.0"), &format!("sha256:{minor}")),
                3,
            );
        }
        assert_eq!(versions(&status), ["1.4.0", "1.3.0", "1.2.0"]);
    }

    #[test]
    fn only_new_content_is_recorded_in_the_history() {
        let mut status = StackStatus::default();
        record_applied(
            &mut status,
            rendered("1.0.0", "sha256:a"),
            BTreeSet::new(),
            10,
        );
        let first = status.history[0].applied_at.clone();
        // The same content again (a drift correction, a resync): no new entry.
        record_applied(
            &mut status,
            rendered("1.0.0", "sha256:a"),
            BTreeSet::new(),
            10,
        );
        assert_eq!(versions(&status), ["1.0.0"]);
        assert_eq!(status.history[0].applied_at, first);
        record_applied(
            &mut status,
            rendered("1.1.0", "sha256:b"),
            BTreeSet::new(),
            10,
        );
        assert_eq!(versions(&status), ["1.1.0", "1.0.0"]);
        assert_eq!(
            (status.version.as_deref(), status.digest.as_deref()),
            (Some("1.1.0"), Some("sha256:b"))
        );
    }

    #[test]
    fn content_is_identified_by_version_and_digest() {
        let mut status = StackStatus::default();
        assert!(content_changed(&rendered("1.0.0", "sha256:a"), &status));
        status.version = Some("1.0.0".into());
        status.digest = Some("sha256:a".into());
        let cases = [
            ("1.0.0", "sha256:a", false),
            ("1.0.1", "sha256:a", true),
            ("1.0.0", "sha256:b", true),
        ];
        for (version, digest, changed) in cases {
            assert_eq!(
                content_changed(&rendered(version, digest), &status),
                changed,
                "{version} {digest}"
            );
        }
    }
}
