//! The layers of the crate, checked: `api` ← `render` ← `controllers` ←
//! `operator`, with `runtime` underneath the controllers, and `cli` (the
//! command for people) at the operator's level, named by no other layer. A module may name
//! its own layer and those below it, never one above, in production code
//! or in tests; this test fails on the first import that reaches up.

use std::path::{Path, PathBuf};

/// The top-level modules each layer may name (besides itself). `Error` and
/// `Result` of the crate root belong to the controllers' level: they carry
/// render and API errors up to the process.
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "api" => &["api"],
        "render" => &["api", "render"],
        "runtime" => &["api", "render", "runtime"],
        "controllers" => &["api", "render", "runtime", "controllers", "Error", "Result"],
        "operator" => &[
            "api",
            "render",
            "runtime",
            "controllers",
            "operator",
            "Error",
            "Result",
        ],
        // The command for people sits beside the operator: it reads the API
        // types and the condition helpers, and nothing names it.
        "cli" => &["api", "controllers", "cli"],
        other => panic!("src/{other} is not a known layer: add it to `allowed`"),
    }
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The module path of `file` under `src/`: `src/controllers/function/mod.rs`
/// is `["controllers", "function"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src/");
    let mut path: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// The top-level names a source text imports from the crate root: the
/// first segment after each `crate::` (each entry of a `crate::{...}`
/// group), and after each `super::` chain that climbs to the root.
fn root_names(text: &str, module: &[String]) -> Vec<(usize, String)> {
    let mut names = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::").or_else(|| rest.find("super::")) {
            let (mut tail, depth) = if rest[at..].starts_with("crate::") {
                (&rest[at + "crate::".len()..], usize::MAX)
            } else {
                let mut tail = &rest[at..];
                let mut depth = 0;
                while let Some(t) = tail.strip_prefix("super::") {
                    tail = t;
                    depth += 1;
                }
                (tail, depth)
            };
            rest = tail;
            // `super` from a file's own module: a file `a/b.rs` is module
            // `a::b`, so one `super` reaches `a`.
            if depth != usize::MAX && depth < module.len() {
                continue;
            }
            if let Some(group) = tail.strip_prefix('{') {
                // Top-level entries of the group, up to its closing brace
                // (a group spanning lines is read from the following ones).
                let joined: String = std::iter::once(group)
                    .chain(text.lines().skip(number + 1))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut level = 0;
                let mut entry = String::new();
                for c in joined.chars() {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => break,
                        '}' => level -= 1,
                        ',' if level == 0 => {
                            names.push((number + 1, first_segment(&entry)));
                            entry.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if level == 0 {
                        entry.push(c);
                    }
                }
                names.push((number + 1, first_segment(&entry)));
                tail = "";
            }
            let name = first_segment(tail);
            if !name.is_empty() {
                names.push((number + 1, name));
            }
        }
    }
    names.retain(|(_, n)| !n.is_empty() && n != "self");
    names
}

fn first_segment(text: &str) -> String {
    text.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    for file in sources(&src) {
        let module = module_path(&src, &file);
        let Some(layer) = module
            .first()
            .filter(|_| module.len() > 1 || file.parent() != Some(&src))
        else {
            continue; // lib.rs, main.rs and this file: the crate root.
        };
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        for (line, name) in root_names(&text, &module) {
            if !allowed(layer).contains(&name.as_str()) {
                upward.push(format!(
                    "{}:{line}: `{layer}` names `{name}`",
                    file.strip_prefix(&src).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that reach a layer above their own (api <- render <- controllers <- operator; runtime under controllers):\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_reads_groups_and_super_chains() {
    let module = ["controllers".to_string(), "function".to_string()];
    let names = root_names(
        "use crate::{\n    api::NetworkFunction,\n    operator::Gate,\n};\nuse super::super::runtime::metrics;\nuse super::Ctx;",
        &module,
    );
    let names: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["api", "operator", "runtime"]);
}
