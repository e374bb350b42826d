//! The image, checked without a Docker engine: hadolint finds nothing, the
//! Dockerfile builds the binary with the same command as `hack/static-build`
//! (which builds and checks that binary on this machine), and the image and
//! the chart agree on the user, the port and the command.

use std::process::Command;

use crate::chart::default_values;
use crate::{documents, find, render};
use strata_testkit::{OutputExt, repo_root};

/// The static build, as both the Dockerfile and hack/static-build run it.
const BUILD: &str = "RUSTFLAGS='-C target-feature=+crt-static'";
const CARGO: &str = "cargo build --release --locked --target";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dockerfile_passes_hadolint() {
    let output = Command::new(repo_root().join("hack/lint-dockerfile"))
        .output()
        .expect("hack/lint-dockerfile runs");
    output.expect_success("hack/lint-dockerfile (hadolint)");
}

#[test]
fn dockerfile_builds_what_hack_static_build_checks() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let dockerfile = read("Dockerfile");
    let script = read("hack/static-build");
    for text in [&dockerfile, &script] {
        assert!(text.contains(BUILD) && text.contains(CARGO));
    }
    // The runtime stage: distroless static, non-root, the metrics port, and
    // `strata run` by default.
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a multi-stage Dockerfile");
    assert!(
        runtime.starts_with("gcr.io/distroless/static-debian12:nonroot\n"),
        "{runtime}"
    );
    let lines: Vec<&str> = runtime.lines().collect();
    for expected in [
        "COPY --from=builder /strata /strata",
        "USER 65532:65532",
        "EXPOSE 8080",
        "ENTRYPOINT [\"/strata\"]",
        "CMD [\"run\"]",
    ] {
        assert!(
            lines.contains(&expected),
            "no `{expected}` in the runtime stage:\n{runtime}"
        );
    }

    // The chart runs the image as that user, on that port, with that command.
    let objects = documents(&render("strata", "strata-system", &[]));
    let pod = &find(&objects, "Deployment", "strata")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["runAsGroup"], 65532);
    assert_eq!(pod["containers"][0]["args"], serde_json::json!(["run"]));
    assert_eq!(default_values()["metrics"]["port"], 8080);

    // Only the sources go into the build context (the test kit's, a workspace
    // member, because Cargo reads it to resolve the lock file).
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        ["*", "!Cargo.toml", "!Cargo.lock", "!src/", "!testkit/"]
    );
}
