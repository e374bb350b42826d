//! Output for people and for scripts. Tables are aligned by `tabled`
//! (which measures cells without their colour codes) and coloured with
//! `anstyle`; they are written through `anstream`, which drops the colour
//! codes unless stdout is a terminal, and always when `NO_COLOR` is set
//! (`CLICOLOR_FORCE=1` keeps them in a pipe). `-o json|yaml` prints the
//! command's documented document instead, without colour.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tabled::settings::{Padding, Style as Borders};

/// How a command prints its answer.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned tables for people, coloured on a terminal.
    #[default]
    Table,
    /// The command's document as JSON.
    Json,
    /// The command's document as YAML.
    Yaml,
}

/// Prints `document` as `format` says: `table` renders it for people.
pub fn emit<T: Serialize>(format: Format, document: &T, table: impl FnOnce(&T) -> String) {
    let text = render(format, document, table);
    let mut out = anstream::stdout();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The text [`emit`] prints.
pub fn render<T: Serialize>(
    format: Format,
    document: &T,
    table: impl FnOnce(&T) -> String,
) -> String {
    match format {
        Format::Table => table(document),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(document).expect("documents serialize");
            text.push('\n');
            text
        }
        Format::Yaml => serde_yaml::to_string(document).expect("documents serialize"),
    }
}

/// Rows under an upper-case header, columns three spaces apart, as kubectl
/// prints them. An empty `rows` prints `none` instead.
pub fn table<R>(header: &[&str], rows: impl IntoIterator<Item = R>) -> String
where
    R: IntoIterator<Item = String>,
{
    let mut builder = tabled::builder::Builder::default();
    builder.push_record(header.iter().map(|h| paint(Tone::Heading, h)));
    let mut empty = true;
    for row in rows {
        builder.push_record(row);
        empty = false;
    }
    if empty {
        return format!("{}\n", paint(Tone::Dim, "none"));
    }
    lines(builder)
}

/// Label / value pairs, labels aligned: the top of a trace.
pub fn fields(pairs: Vec<(&str, String)>) -> String {
    let mut builder = tabled::builder::Builder::default();
    for (label, value) in pairs {
        builder.push_record([paint(Tone::Dim, &format!("{label}:")), value]);
    }
    lines(builder)
}

fn lines(builder: tabled::builder::Builder) -> String {
    let mut table = builder.build();
    table.with(Borders::empty()).with(Padding::new(0, 3, 0, 0));
    let mut text: String = table
        .to_string()
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect();
    if text.is_empty() {
        text.push('\n');
    }
    text
}

/// A section heading.
pub fn heading(text: &str) -> String {
    format!("\n{}\n", paint(Tone::Heading, text))
}

/// What a word says about health, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Healthy: Ready, Succeeded, True.
    Good,
    /// In progress or held: Progressing, Queued.
    Waiting,
    /// Broken: not Ready, Failed, Stalled, missing.
    Bad,
    /// Secondary text.
    Dim,
    /// Column and section headings.
    Heading,
}

/// `text` in the colour of `tone` (the codes are dropped off a terminal).
pub fn paint(tone: Tone, text: &str) -> String {
    let style = match tone {
        Tone::Good => Style::new().fg_color(Some(AnsiColor::Green.into())),
        Tone::Waiting => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Tone::Bad => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        Tone::Dim => Style::new().dimmed(),
        Tone::Heading => Style::new().bold(),
    };
    format!("{style}{text}{style:#}")
}

/// A yes/no readiness word, coloured.
pub fn ready_word(ready: bool) -> String {
    if ready {
        paint(Tone::Good, "Ready")
    } else {
        paint(Tone::Bad, "NotReady")
    }
}

/// `value`, or a dimmed `-` when there is none.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => paint(Tone::Dim, "-"),
    }
}

/// A digest shortened for a table: `sha256:9f2c51b0e4d8`.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.chars().take(19).collect(),
    }
}

/// How long ago `rfc3339` was, as kubectl's AGE column says it (`5m`, `3h`, `12d`).
pub fn age(rfc3339: &str) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(then) => compact(Timestamp::now().duration_since(then)),
        Err(_) => or_dash(None),
    }
}

/// The time from `start` to `end` (RFC 3339), compact (`29s`, `4m`).
pub fn between(start: &str, end: Option<&str>) -> Option<String> {
    let start = start.parse::<Timestamp>().ok()?;
    let end = end?.parse::<Timestamp>().ok()?;
    Some(compact(end.duration_since(start)))
}

fn compact(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> String {
        anstream::adapter::strip_str(text).to_string()
    }

    #[test]
    fn tables_align_columns_whatever_their_colour() {
        let text = plain(&table(
            &["NAME", "STATE"],
            vec![
                [paint(Tone::Good, "upf"), ready_word(true)],
                ["smf-long-name".into(), ready_word(false)],
            ],
        ));
        assert_eq!(
            text,
            "NAME            STATE\nupf             Ready\nsmf-long-name   NotReady\n"
        );
        assert_eq!(plain(&table(&["A"], Vec::<Vec<String>>::new())), "none\n");
    }

    #[test]
    fn times_read_as_kubectl_ages() {
        assert_eq!(compact(SignedDuration::from_secs(29)), "29s");
        assert_eq!(compact(SignedDuration::from_secs(600)), "10m");
        assert_eq!(compact(SignedDuration::from_secs(3 * 3600)), "3h");
        assert_eq!(compact(SignedDuration::from_secs(3 * 86400)), "3d");
        assert_eq!(
            between("2026-11-20T10:02:11Z", Some("2026-11-20T10:02:40Z")).as_deref(),
            Some("29s")
        );
        assert_eq!(between("2026-11-20T10:02:11Z", None), None);
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
    }

    #[test]
    fn documents_print_as_json_and_yaml() {
        let doc = serde_json::json!({"name": "upf"});
        assert_eq!(
            render(Format::Json, &doc, |_| unreachable!()),
            "{\n  \"name\": \"upf\"\n}\n"
        );
        assert_eq!(
            render(Format::Yaml, &doc, |_| unreachable!()),
            "name: upf\n"
        );
    }
}
