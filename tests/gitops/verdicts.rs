//! What GitOps tools make of an object: Argo CD, by running the health
//! scripts of `deploy/argocd/argocd-cm-health.yaml` with a Lua interpreter
//! (`obj` set from the object's JSON, as Argo CD does), and Flux or
//! `kubectl wait`-style tooling, by kstatus (`hack/kstatus`, built by
//! `hack/plane build`, its path exported by `hack/plane env` as
//! `STRATA_KSTATUS`).

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use strata_testkit::repo_root;

/// The file holding the Argo CD health customizations.
pub const ARGOCD_HEALTH: &str = "deploy/argocd/argocd-cm-health.yaml";

/// A verdict: status ("Healthy", "Current", ...) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: String,
    pub message: String,
}

/// The Lua health script for `kind` from the argocd-cm snippet.
pub fn health_script(kind: &str) -> String {
    let path = repo_root().join(ARGOCD_HEALTH);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let configmap: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let key = format!("resource.customizations.health.strata.dev_{kind}");
    configmap["data"][key.as_str()]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no data key {key}", path.display()))
        .to_string()
}

/// `value` as a Lua expression: objects and arrays become tables (arrays
/// 1-based), null becomes nil, as Argo CD hands objects to health scripts.
pub fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A quoted Lua string literal for `s` (bytes outside printable ASCII as
/// decimal escapes, so any UTF-8 survives unchanged).
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for byte in s.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

/// Runs `program` with `stdin`; panics with `what`, the exit status and
/// both streams unless it succeeds. Returns stdout.
fn run(program: &OsString, args: &[&str], stdin: &str, what: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program:?} for {what}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("the process runs");
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The Lua interpreter: `$LUA`, or `lua5.4` (installed by hack/ensure-tools).
fn lua() -> OsString {
    std::env::var_os("LUA")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "lua5.4".into())
}

/// Argo CD's health verdict for `object` of `kind`: the script runs as the
/// body of a function, with the global `obj` set, as in Argo CD.
pub fn argo_health(kind: &str, object: &Value) -> Verdict {
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{}\nend)()\n\
         assert(type(hs) == \"table\", \"the health script returned no table\")\n\
         io.write(tostring(hs.status), \"\\n\", tostring(hs.message or \"\"))\n",
        lua_literal(object),
        health_script(kind)
    );
    let out = run(
        &lua(),
        &["-"],
        &program,
        &format!("the Argo CD health script of {kind}"),
    );
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    Verdict {
        status: status.into(),
        message: message.into(),
    }
}

/// kstatus' verdict (`status.Compute`) for `object`.
pub fn kstatus(object: &Value) -> Verdict {
    let Some(program) = std::env::var_os("STRATA_KSTATUS").filter(|p| !p.is_empty()) else {
        panic!(
            "STRATA_KSTATUS is not set: build the kstatus helper with `hack/plane build` and \
             `eval \"$(hack/plane env)\"` (or run the tests through hack/test)"
        );
    };
    let out = run(&program, &[], &object.to_string(), "kstatus");
    let verdict: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("kstatus printed {out:?}, not JSON: {e}"));
    Verdict {
        status: verdict["status"].as_str().unwrap_or_default().into(),
        message: verdict["message"].as_str().unwrap_or_default().into(),
    }
}

#[test]
fn lua_literals_round_trip_through_the_interpreter() {
    let value = serde_json::json!({
        "s": "quote \" backslash \\ newline \n ${x} ünïcode",
        "n": 3, "f": 1.5, "b": true, "none": null,
        "list": [{"type": "Ready"}, {"type": "Stalled"}],
    });
    let program = format!(
        "local v = {}\nio.write(v.s, \"|\", v.n + 1, \"|\", v.f, \"|\", tostring(v.b), \"|\", \
         tostring(v.none), \"|\", #v.list, \"|\", v.list[2].type)",
        lua_literal(&value)
    );
    let out = run(&lua(), &["-"], &program, "lua");
    assert_eq!(
        out,
        "quote \" backslash \\ newline \n ${x} ünïcode|4|1.5|true|nil|2|Stalled"
    );
}
