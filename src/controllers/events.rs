//! Kubernetes Events, published as a series per object, reason, action,
//! related object and note: the first occurrence is created, and each
//! repeat within [`SERIES_TTL`] patches the series' count and last time, as
//! client-go's event broadcaster does.
//!
//! kube's `Recorder` does the same, but keeps a clone of every Event it
//! published in the last six minutes (about 1.6 KB each), and sweeps them
//! only when it publishes again: a rollout of 10 000 functions left 16 MB
//! behind it. This recorder keeps, per series, a 64-bit hash of its key,
//! the Event's name and namespace and its count (about 150 bytes).
//!
//! It also publishes what kube's cannot: notes longer than the API server
//! accepts are cut to [`MAX_NOTE`], and Events about objects with names
//! longer than [`MAX_RECORDED_NAME`] are named after the name's first
//! characters (an Event is named `<object name>.<nanoseconds in hex>`,
//! which for a Stack named with 253 characters would be too long).

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Client,
    api::{Api, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType},
};

/// The longest note the API server accepts, in bytes.
pub const MAX_NOTE: usize = 1024;

/// The longest object name an Event can be named after whole: 253 less the
/// `.` and 16 hex digits appended.
pub const MAX_RECORDED_NAME: usize = 253 - 17;

/// How long after its last occurrence a repeat still counts in a series
/// (client-go's and kube's six minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// How often, at most, series older than [`SERIES_TTL`] are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

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

/// Publishes Events as `controller`, folding repeats into series.
pub struct Recorder {
    client: Client,
    controller: String,
    series: Mutex<Series>,
}

/// The series published within [`SERIES_TTL`], by the hash of their key.
struct Series {
    by_key: HashMap<u64, Occurrences>,
    swept: Instant,
}

/// One series: the Event that holds it, and how often it occurred.
#[derive(Clone)]
struct Occurrences {
    name: String,
    namespace: String,
    count: i32,
    last: Instant,
}

impl Recorder {
    /// A recorder reporting as `controller` (also its reporting instance).
    pub fn new(client: Client, controller: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            series: Mutex::new(Series {
                by_key: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Publishes `event` about `regarding`: a new Event, or the next
    /// occurrence of its series.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let key = series_key(event, regarding);
        let now = Instant::now();
        let repeat = self.occurred(key, now);
        if let Some(series) = repeat {
            let patch = serde_json::json!({"series": {
                "count": series.count,
                "lastObservedTime": MicroTime(Timestamp::now()),
            }});
            let api = Api::<K8sEvent>::namespaced(self.client.clone(), &series.namespace);
            match api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone (Events expire after an hour by default): start anew.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let created = self.new_event(event, regarding);
        let name = created.metadata.name.clone().unwrap_or_default();
        let namespace = created.metadata.namespace.clone().unwrap_or_default();
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &created)
            .await?;
        self.began(key, name, namespace, now);
        Ok(())
    }

    /// The series of `key` with this occurrence counted, when it occurred
    /// within [`SERIES_TTL`]; sweeps expired series now and then.
    fn occurred(&self, key: u64, now: Instant) -> Option<Occurrences> {
        let mut series = self.series.lock().ok()?;
        if now.duration_since(series.swept) >= SWEEP_EVERY {
            series
                .by_key
                .retain(|_, s| now.duration_since(s.last) < SERIES_TTL);
            // What a burst left behind goes back to the allocator.
            if series.by_key.len() * 4 < series.by_key.capacity() {
                series.by_key.shrink_to_fit();
            }
            series.swept = now;
        }
        let occurrences = series.by_key.get_mut(&key)?;
        if now.duration_since(occurrences.last) >= SERIES_TTL {
            return None;
        }
        occurrences.count = occurrences.count.saturating_add(1);
        occurrences.last = now;
        Some(occurrences.clone())
    }

    /// Remembers the series of `key`, begun by the Event `name`.
    fn began(&self, key: u64, name: String, namespace: String, now: Instant) {
        if let Ok(mut series) = self.series.lock() {
            series.by_key.insert(
                key,
                Occurrences {
                    name,
                    namespace,
                    count: 1,
                    last: now,
                },
            );
        }
    }

    /// The first Event of a series: named after (the first characters of)
    /// the object's name and the time, in the object's namespace.
    fn new_event(&self, event: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = Timestamp::now();
        let name = regarding.name.as_deref().unwrap_or(&self.controller);
        let prefix = name[..floor_char_boundary(name, MAX_RECORDED_NAME)]
            .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone().map(fit_note),
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.controller.clone()),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Default::default()
        }
    }
}

/// What makes two Events one series: their type, action, reason, note, the
/// object they regard and the related one (client-go's key).
fn series_key(event: &Event, regarding: &ObjectReference) -> u64 {
    let mut hasher = DefaultHasher::new();
    let type_ = match event.type_ {
        EventType::Normal => 0u8,
        EventType::Warning => 1,
    };
    type_.hash(&mut hasher);
    event.action.hash(&mut hasher);
    event.reason.hash(&mut hasher);
    event.note.hash(&mut hasher);
    for reference in std::iter::once(Some(regarding)).chain([event.secondary.as_ref()]) {
        let reference = reference.map(|r| (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid));
        reference.hash(&mut hasher);
    }
    hasher.finish()
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
    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use tower_test::mock;

    use super::*;

    /// A request the mock API server was sent: method, path and body.
    type Sent = (Method, String, serde_json::Value);

    /// A recorder against a mock API server that answers `answers` in turn
    /// (404 when the answer is `None`), and what it was sent.
    fn recorder(
        answers: Vec<Option<serde_json::Value>>,
    ) -> (Recorder, tokio::task::JoinHandle<Vec<Sent>>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let (request, send) = handle.next_request().await.expect("a request");
                let method = request.method().clone();
                let path = request.uri().path().to_string();
                let body = request.into_body().collect_bytes().await.unwrap();
                seen.push((method, path, serde_json::from_slice(&body).unwrap()));
                let response = match answer {
                    Some(object) => Response::builder()
                        .body(Body::from(serde_json::to_vec(&object).unwrap()))
                        .unwrap(),
                    None => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::from(
                            serde_json::to_vec(&serde_json::json!({
                                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404, "message": "gone"}))
                            .unwrap(),
                        ))
                        .unwrap(),
                };
                send.send_response(response);
            }
            seen
        });
        (
            Recorder::new(Client::new(service, "default"), "strata"),
            server,
        )
    }

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: "StackNotFound".into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn upf() -> ObjectReference {
        ObjectReference {
            api_version: Some("strata.dev/v1alpha1".into()),
            kind: Some("NetworkFunction".into()),
            namespace: Some("telco".into()),
            name: Some("upf".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        }
    }

    fn ok() -> Option<serde_json::Value> {
        Some(
            serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "upf.1", "namespace": "telco"}, "eventTime": null}),
        )
    }

    #[tokio::test]
    async fn repeats_count_in_one_series_and_other_notes_begin_their_own() {
        let (recorder, server) = recorder(vec![ok(), ok(), ok(), ok()]);
        for note in [
            "stack edge does not exist",
            "stack edge does not exist",
            "stack edge is not Ready",
            "stack edge does not exist",
        ] {
            recorder.publish(&event(note), &upf()).await.unwrap();
        }
        let seen = server.await.unwrap();
        let events = "/apis/events.k8s.io/v1/namespaces/telco/events";
        assert_eq!(seen[0].0, Method::POST);
        assert_eq!(seen[0].1, events);
        let name = seen[0].2["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("upf."), "{name}");
        assert_eq!(seen[0].2["note"], "stack edge does not exist");
        assert_eq!(seen[0].2["reportingController"], "strata");
        assert_eq!(
            (&seen[1].0, &seen[1].1),
            (&Method::PATCH, &format!("{events}/{name}"))
        );
        assert_eq!(seen[1].2["series"]["count"], 2);
        assert_eq!(
            (&seen[2].0, &seen[2].2["note"]),
            (&Method::POST, &serde_json::json!("stack edge is not Ready"))
        );
        assert_eq!(seen[3].0, Method::PATCH);
        assert_eq!(seen[3].2["series"]["count"], 3);
        assert_eq!(recorder.series.lock().unwrap().by_key.len(), 2);
    }

    #[tokio::test]
    async fn a_series_whose_event_is_gone_begins_again() {
        let (recorder, server) = recorder(vec![ok(), None, ok(), ok()]);
        for _ in 0..3 {
            recorder
                .publish(&event("stack edge does not exist"), &upf())
                .await
                .unwrap();
        }
        let methods: Vec<_> = server
            .await
            .unwrap()
            .into_iter()
            .map(|(m, _, b)| (m, b["series"]["count"].clone()))
            .collect();
        assert_eq!(
            methods,
            [
                (Method::POST, serde_json::Value::Null),
                (Method::PATCH, serde_json::json!(2)),
                (Method::POST, serde_json::Value::Null),
                (Method::PATCH, serde_json::json!(2)),
            ]
        );
    }

    #[tokio::test]
    async fn long_names_and_notes_are_cut_to_what_the_api_server_accepts() {
        let (service, _handle) = mock::pair::<Request<Body>, Response<Body>>();
        let recorder = Recorder::new(Client::new(service, "default"), "strata");
        let mut stack = upf();
        stack.name = Some(format!("{}-edge", "a".repeat(248)));
        let created = recorder.new_event(&event(&"é".repeat(600)), &stack);
        let name = created.metadata.name.unwrap();
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.starts_with(&"a".repeat(200)));
        assert!(created.note.unwrap().len() <= MAX_NOTE);
    }

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
