# Versions of the local control plane's components. Sourced by hack/ scripts.
#
# Kubernetes: the first release whose go.mod the installed Go satisfies wins.
# These are the newest patches of each minor on the Go module proxy when they
# were last bumped; `hack/plane versions` prints what the proxy offers now.
# The Cargo.toml k8s-openapi feature matches the first entry (v1_37).
KUBE_CANDIDATES="v1.37.2 v1.36.3 v1.35.4"
ETCD_VERSION="v3.6.16"
KWOK_VERSION="v0.8.0"
HELM_VERSION="v3.22.0"
# kstatus (tests/gitops.rs): sigs.k8s.io/cli-utils' pkg/kstatus (Flux uses
# its fork, github.com/fluxcd/cli-utils). The proxy refuses the module's
# version list (403), so `go list -m -versions` cannot show the newest;
# v0.37.2 (2024-07-08) resolves and builds with go1.26.
KSTATUS_CLI_UTILS_VERSION="v0.37.2"
# Prometheus and promtool (the dashboard's queries and the alert rules,
# tests/monitoring.rs and hack/test): module v0.X.Y is Prometheus 3.X.Y.
PROMETHEUS_VERSION="v0.316.0"
# Flux (tests/flux/): source-controller and kustomize-controller, built from
# their own modules with the machine's Go; their CRDs come from the same
# module versions. v1.9.6 is the newest release whose dependencies the Go
# module proxy serves: v1.10.x needs go 1.27 (GOTOOLCHAIN=go1.27.3 would do)
# but also fluxcd/pkg/artifact v0.27.1, pkg/spiffe, pkg/apis/crypto v0.5.0,
# pkg/http/transport v0.9.0, pkg/masktoken v0.10.0 and cosign v3.1.4, which
# the proxy refuses ("This module version is not available").
FLUX_SOURCE_CONTROLLER_VERSION="v1.9.6"
FLUX_KUSTOMIZE_CONTROLLER_VERSION="v1.9.6"
# Dependencies whose pinned version the proxy refuses, replaced by the
# nearest version it serves: "module version" pairs, one per line, applied
# to both builds. source-controller v1.9.6 pins fluxcd/pkg/artifact v0.18.3
# (the artifact storage and its HTTP server); v0.18.1 is a patch apart.
FLUX_REPLACES="github.com/fluxcd/pkg/artifact v0.18.1"
