//! A trace for people: one line saying where the object stands, the
//! blocker in plain words, what it runs, then tables of what it names.

use super::view::*;
use crate::cli::blockers::Blocker;
use crate::cli::output::{Tone, fields, heading, or_dash, paint, ready_word, short_digest, table};

/// The whole screen for `trace`.
pub fn trace(trace: &Trace) -> String {
    let mut text = headline(trace);
    if let Some(blocker) = &trace.blocker {
        text += &blocked_by(blocker, trace.ready);
    }
    if let Some(function) = &trace.function {
        text += &function_screen(trace, function);
    }
    if let Some(stack) = &trace.stack {
        text += &stack_screen(trace, stack);
    }
    if let Some(chain) = &trace.chain {
        text += &chain_screen(trace, chain);
    }
    text
}

fn headline(trace: &Trace) -> String {
    let (tone, word) = match trace.state {
        State::Ready => (Tone::Good, "Ready"),
        State::Progressing => (Tone::Waiting, "Progressing"),
        State::Blocked => (Tone::Bad, "Blocked"),
        State::Stalled => (Tone::Bad, "Stalled"),
        State::Missing => (Tone::Bad, "NotFound"),
    };
    let object = paint(
        Tone::Heading,
        &format!("{} {}/{}", trace.kind, trace.namespace, trace.name),
    );
    format!("{object}: {}\n", paint(tone, word))
}

fn blocked_by(blocker: &Blocker, ready: bool) -> String {
    let what = match &blocker.version {
        Some(version) => format!("{} {} {version}", blocker.kind, blocker.name),
        None => format!("{} {}", blocker.kind, blocker.name),
    };
    let (tone, label) = if ready {
        (Tone::Waiting, "Held by")
    } else {
        (Tone::Bad, "Blocked by")
    };
    format!("{} {what}: {}\n", paint(tone, label), blocker.message)
}

fn state_word(ready: bool, reason: Option<&str>) -> String {
    match (ready, reason) {
        (true, _) => ready_word(true),
        (false, Some(reason)) => paint(Tone::Bad, reason),
        (false, None) => ready_word(false),
    }
}

fn function_screen(trace: &Trace, f: &FunctionTrace) -> String {
    let mut pairs = vec![("Version", f.version.clone()), ("Image", f.image.clone())];
    match &f.running {
        Some(run) => {
            let pinned = if run.image_pinned {
                paint(Tone::Good, "pinned")
            } else {
                paint(Tone::Waiting, "not pinned")
            };
            pairs.push((
                "Running",
                format!("{} {} ({pinned})", run.version, run.image),
            ));
            let on = format!(
                "{} {} {}",
                run.stack.name,
                run.stack.version,
                short_digest(&run.stack.digest)
            );
            pairs.push(("On stack", on));
            pairs.push(("Config", short_digest(&run.config_digest)));
        }
        None => pairs.push(("Running", paint(Tone::Dim, "nothing yet"))),
    }
    if let Some(record) = &f.record {
        let outcome = record.outcome.as_deref().unwrap_or("deleted");
        let tone = match outcome {
            "Succeeded" => Tone::Good,
            "Failed" | "deleted" => Tone::Bad,
            _ => Tone::Waiting,
        };
        pairs.push((
            "Record",
            format!("{} {}", record.name, paint(tone, outcome)),
        ));
    }
    let s = &f.stack;
    let stack_now = match (&s.version, s.found) {
        (_, false) => paint(Tone::Bad, "missing"),
        (Some(v), true) => format!(
            "at {v}, {}",
            state_word(s.ready, s.condition.as_ref().map(|c| c.reason.as_str()))
        ),
        (None, true) => paint(Tone::Waiting, "nothing applied"),
    };
    pairs.push((
        "Stack",
        format!(
            "{} wants {} ({}); {stack_now}",
            s.name, s.requirement, s.update_policy
        ),
    ));
    pairs.push((
        "Pods",
        format!("{}/{} ready", f.replicas.ready, f.replicas.desired),
    ));
    if let Some(message) = &trace.message {
        pairs.push(("Message", message.clone()));
    }
    let mut text = fields(pairs);
    if !f.dependencies.is_empty() {
        text += &heading("Dependencies");
        let rows = f.dependencies.iter().map(|d| {
            let version = if d.found {
                or_dash(d.version.as_deref())
            } else {
                paint(Tone::Bad, "missing")
            };
            let fits = if d.satisfied {
                paint(Tone::Good, "yes")
            } else {
                paint(Tone::Bad, "no")
            };
            [
                d.name.clone(),
                d.requirement.clone(),
                version,
                fits,
                state_word(d.ready, d.reason.as_deref()),
            ]
        });
        text += &table(&["NAME", "WANTS", "VERSION", "SATISFIES", "STATE"], rows);
    }
    if !f.chains.is_empty() {
        text += &heading("Chains");
        let rows = f
            .chains
            .iter()
            .map(|c| [c.name.clone(), c.hop.clone(), ready_word(c.ready)]);
        text += &table(&["CHAIN", "HOP", "STATE"], rows);
    }
    text
}

fn stack_screen(trace: &Trace, s: &StackTrace) -> String {
    let mut pairs = vec![("Version", s.version.clone())];
    pairs.push((
        "Applied",
        format!(
            "{} {}",
            or_dash(s.applied.as_deref()),
            s.digest.as_deref().map(short_digest).unwrap_or_default()
        ),
    ));
    pairs.push(("Inventory", format!("{} objects", s.inventory)));
    if let Some(c) = &s.consumers {
        pairs.push((
            "Consumers",
            format!(
                "{} on the current version of {}",
                c.on_current_version, c.total
            ),
        ));
    }
    if let Some(message) = &trace.message {
        pairs.push(("Message", message.clone()));
    }
    let mut text = fields(pairs);
    text += &heading("Functions");
    let rows = s.functions.iter().map(|f| {
        [
            f.name.clone(),
            f.requirement.clone(),
            or_dash(f.stack_version.as_deref()),
            state_word(f.ready, f.reason.as_deref()),
        ]
    });
    text += &table(&["NAME", "WANTS", "ON-VERSION", "STATE"], rows);
    if !s.history.is_empty() {
        text += &heading("History");
        let rows = s.history.iter().map(|h| {
            [
                h.version.clone(),
                short_digest(&h.digest),
                h.applied_at.clone(),
            ]
        });
        text += &table(&["VERSION", "DIGEST", "APPLIED"], rows);
    }
    text
}

fn chain_screen(trace: &Trace, c: &ChainTrace) -> String {
    let mut text = match &trace.message {
        Some(message) => fields(vec![("Message", message.clone())]),
        None => String::new(),
    };
    text += &heading("Hops");
    let rows = c.hops.iter().map(|h| {
        let version = if h.found {
            or_dash(h.version.as_deref())
        } else {
            paint(Tone::Bad, "missing")
        };
        let fits = if h.satisfied {
            paint(Tone::Good, "yes")
        } else {
            paint(Tone::Bad, "no")
        };
        let state = state_word(h.ready, h.blocker.as_ref().map(|b| b.reason.as_str()));
        [
            h.name.clone(),
            h.network_function.clone(),
            h.requirement.clone(),
            version,
            fits,
            or_dash(h.stack_version.as_deref()),
            state,
        ]
    });
    text += &table(
        &[
            "HOP",
            "FUNCTION",
            "WANTS",
            "VERSION",
            "SATISFIES",
            "STACK-VERSION",
            "STATE",
        ],
        rows,
    );
    text
}
