# syntax=docker/dockerfile:1
#
# The strata operator image: one static binary on distroless, as non-root.
#
#   docker build -t localhost/strata:0.1.0 .
#
# The binary is linked statically against glibc (crt-static), which needs no
# extra Rust target; hack/static-build builds exactly the same binary without
# Docker and runs it, against a real API server, in an empty root that holds
# only the /dev nodes every container runtime provides. At run time it needs
# no shared library: glibc >= 2.34 has its files and dns host lookups built
# in (/etc/hosts and /etc/resolv.conf come from the kubelet; in a cluster the
# API server is reached at KUBERNETES_SERVICE_HOST, an IP address anyway),
# and randomness comes from /dev/urandom.
# For reproducible production images, pin both base images by digest.

FROM rust:1.95-bookworm AS builder
# The platform being built (set by BuildKit): amd64 or arm64.
ARG TARGETARCH
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The test kit is a workspace member (and a dev-dependency): Cargo reads its
# manifest to resolve the lock file, though the release build does not use it.
COPY testkit ./testkit
# --target keeps crt-static away from build scripts and proc macros, which
# must stay dynamic; the registry and target caches survive between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "${TARGETARCH:-amd64}" in \
      amd64) arch=x86_64 ;; \
      arm64) arch=aarch64 ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && RUSTFLAGS='-C target-feature=+crt-static' \
       cargo build --release --locked --target "${arch}-unknown-linux-gnu" \
    && cp "target/${arch}-unknown-linux-gnu/release/strata" /strata \
    && readelf --program-headers /strata > /tmp/program-headers \
    && if grep -q INTERP /tmp/program-headers; then \
         echo "/strata is not statically linked" >&2; exit 1; \
       fi \
    && /strata version

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="strata" \
      org.opencontainers.image.description="Kubernetes operator for versioned infrastructure stacks, network functions and service chains" \
      org.opencontainers.image.licenses="Apache-2.0"
# The same binary is the kubectl plugin (`kubectl strata trace nf upf`):
#   docker create --name strata-cli IMAGE && docker cp strata-cli:/strata kubectl-strata
# then put kubectl-strata on PATH (README, "The strata command for people").
COPY --from=builder /strata /strata
# distroless "nonroot": UID and GID 65532, as the Helm chart and deploy/ expect.
USER 65532:65532
# /metrics, /healthz and /readyz (STRATA_METRICS_ADDR).
EXPOSE 8080
ENTRYPOINT ["/strata"]
CMD ["run"]
