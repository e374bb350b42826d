//! Logs as an event stream on stdout: text or JSON, filtered by level.

use std::{fmt, io::IsTerminal};

use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    fmt::{
        FmtContext, FormatEvent, FormattedFields,
        format::{JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    prelude::*,
    registry::LookupSpan,
};

use super::settings::{LogFormat, Settings};

/// Installs the global subscriber. Fields of the reconcile span (kind,
/// namespace, name) are on every line logged inside it.
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_new(log_filter(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine),
            )
            .init(),
        // Colours only on a terminal: a log collector would store the escape codes.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .init(),
    }
}

/// kube-client logs the body of every refused request at debug level, and
/// the API server's message can quote the values it refused, a Secret's data
/// included. The controllers log each refusal themselves, with secret values
/// cut out (see `controllers::stack::redact`); so kube-client's own client
/// module stays at info unless the filter names kube_client explicitly.
fn log_filter(level: &str) -> String {
    if level.contains("kube_client") {
        level.to_string()
    } else {
        format!("{level},kube_client::client=info")
    }
}

/// One JSON object per line:
///
/// ```json
/// {"timestamp":"…","level":"INFO","target":"strata::controllers::function",
///  "fields":{"message":"rollout started","record":"upf-7f3c2a"},
///  "span":{"kind":"NetworkFunction","namespace":"telco","name":"upf"},
///  "spans":["reconciling object","reconcile"]}
/// ```
///
/// `span` holds the fields of every enclosing span (the innermost wins), so
/// a line logged inside a reconcile names its object. tracing-subscriber's
/// own JSON format writes the span's name into the same object as its
/// fields, and a span field called `name` (the object's name) then ends up
/// as a duplicate key that JSON readers drop; here span names go to `spans`.
pub struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = FieldMap::default();
        event.record(&mut fields);

        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("fields".into(), Value::Object(fields.0));

        let scope = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(leaf) = scope {
            let mut span_fields = Map::new();
            let mut names = Vec::new();
            for span in leaf.scope().from_root() {
                names.push(Value::from(span.name()));
                let extensions = span.extensions();
                let recorded = extensions
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(&f.fields).ok());
                span_fields.extend(recorded.into_iter().flatten());
            }
            line.insert("span".into(), Value::Object(span_fields));
            line.insert("spans".into(), Value::Array(names));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The fields of one event, as JSON values.
#[derive(Default)]
struct FieldMap(Map<String, Value>);

impl tracing::field::Visit for FieldMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn kube_client_error_bodies_stay_out_of_debug_logs() {
        assert_eq!(log_filter("debug"), "debug,kube_client::client=info");
        assert_eq!(
            log_filter("info,kube_client=trace"),
            "info,kube_client=trace"
        );
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_inside_a_reconcile_name_the_object() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonLine)
                .with_writer(buffer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", kind = "NetworkFunction", namespace = "telco", name = %"upf");
            span.in_scope(|| {
                tracing::info!(record = "upf-1", replicas = 3, "rollout started");
                // An event field may share a name with a span field.
                tracing::info!(kind = "ConfigMap", name = "edge-dns", "correcting drift");
            });
            tracing::info!("outside");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let span =
            serde_json::json!({"kind": "NetworkFunction", "namespace": "telco", "name": "upf"});
        assert_eq!(lines[0]["span"], span);
        assert_eq!(lines[0]["spans"], serde_json::json!(["reconcile"]));
        assert_eq!(
            lines[0]["fields"],
            serde_json::json!({"message": "rollout started", "record": "upf-1", "replicas": 3})
        );
        assert_eq!(lines[0]["level"], "INFO");
        assert!(
            lines[0]["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(lines[1]["span"], span);
        assert_eq!(lines[1]["fields"]["name"], "edge-dns");
        assert!(lines[2].get("span").is_none());
    }
}
