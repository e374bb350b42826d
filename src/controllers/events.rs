//! What kube's event Recorder cannot publish: notes longer than the API
//! server accepts, and Events about objects with long names.
//!
//! The API server refuses an Event whose note is longer than 1024 bytes, and
//! the Recorder names an Event `<object name>.<nanoseconds in hex>`, which
//! for an object name longer than 236 characters (a Stack may have 253) is
//! longer than any object name may be. Either way the Recorder's Event
//! would be refused, and a Stalled object would go without the Warning
//! Event the API contract promises.

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Client,
    api::{Api, ObjectMeta, PostParams},
    runtime::events::{Event, EventType},
};

/// The longest note the API server accepts, in bytes.
pub const MAX_NOTE: usize = 1024;

/// The longest object name the Recorder can name an Event after: 253 less
/// the `.` and 16 hex digits it appends.
pub const MAX_RECORDED_NAME: usize = 253 - 17;

/// `note` cut to [`MAX_NOTE`] bytes at a character boundary, ending in `…`
/// when it was cut.
pub fn fit_note(note: String) -> String {
    if note.len() <= MAX_NOTE {
        return note;
    }
    let ellipsis = '…';
    let mut end = MAX_NOTE - ellipsis.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = note[..end].to_string();
    cut.push(ellipsis);
    cut
}

/// Creates the Event the Recorder would, named after the first characters
/// of the object's name. Without the Recorder's deduplication: these are
/// published once per failure anyway.
pub async fn publish_long_named(
    client: &Client,
    controller: &str,
    event: &Event,
    regarding: &ObjectReference,
) -> kube::Result<()> {
    let now = Timestamp::now();
    let name = regarding.name.as_deref().unwrap_or(controller);
    let prefix = name[..floor_char_boundary(name, MAX_RECORDED_NAME)]
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let namespace = regarding.namespace.as_deref().unwrap_or("default");
    let k8s_event = K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        note: event.note.clone(),
        metadata: ObjectMeta {
            name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(controller.to_string()),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        ..Default::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &k8s_event)
        .await
        .map(|_| ())
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit() {
        assert_eq!(fit_note("short".into()), "short");
        let long = "é".repeat(600);
        let fitted = fit_note(long.clone());
        assert!(fitted.len() <= MAX_NOTE, "{}", fitted.len());
        assert!(fitted.ends_with('…'));
        assert!(long.starts_with(fitted.trim_end_matches('…')));
        let exact = "a".repeat(MAX_NOTE);
        assert_eq!(fit_note(exact.clone()), exact);
    }
}
