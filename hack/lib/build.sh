# Builds the local control plane's binaries from the Go module proxy into a
# version-keyed cache outside the repository. Sourced by hack/plane.
#
# Every artefact is built in a scratch directory next to its final place and
# renamed into place only when complete, so an interrupted or failed build
# never leaves a half-valid cache entry behind.

STRATA_CACHE="${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}"

log() { printf '\033[1m[plane]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[plane] error:\033[0m %s\n' "$*" >&2; exit 1; }

go_env() {
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
}

# module_gomod MODULE@VERSION: path of that release's go.mod in the module cache.
module_gomod() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

# go_satisfies GOVERSION: whether the installed Go is at least GOVERSION.
go_satisfies() {
  local have need=$1
  have=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" = "$need" ]
}

# select_kube_version: the first of KUBE_CANDIDATES whose go.mod the local Go satisfies.
select_kube_version() {
  local v gomod need
  for v in $KUBE_CANDIDATES; do
    if [ -f "$STRATA_CACHE/k8s-$v/.complete" ]; then echo "$v"; return; fi
    gomod=$(GOTOOLCHAIN=local module_gomod "k8s.io/kubernetes@$v") || continue
    need=$(awk '$1 == "go" {print $2; exit}' "$gomod")
    if go_satisfies "$need"; then echo "$v"; return; fi
    log "skipping Kubernetes $v: its go.mod needs go $need"
  done
  die "no Kubernetes release among ($KUBE_CANDIDATES) builds with $(go env GOVERSION)"
}

# in_scratch NAME FUNCTION: runs FUNCTION with a scratch directory as $1 and
# renames it to $STRATA_CACHE/NAME once FUNCTION succeeded.
in_scratch() {
  local name=$1 fn=$2 scratch
  [ -f "$STRATA_CACHE/$name/.complete" ] && return 0
  mkdir -p "$STRATA_CACHE"
  scratch=$(mktemp -d "$STRATA_CACHE/.build-$name.XXXXXX")
  local start=$SECONDS status errexit=$-
  # Not `if ! ( set -e; ... )`: errexit is ignored throughout a command
  # whose status is tested, subshells included, so a failing step inside
  # FUNCTION would not stop it.
  set +e
  ( set -e; "$fn" "$scratch" )
  status=$?
  [[ $errexit != *e* ]] || set -e
  if [ "$status" -ne 0 ]; then
    chmod -R u+w "$scratch" 2> /dev/null
    rm -rf "$scratch"
    die "building $name failed (scratch removed; nothing was cached)"
  fi
  touch "$scratch/.complete"
  rm -rf "$STRATA_CACHE/$name"
  mv -T "$scratch" "$STRATA_CACHE/$name"
  log "built $name in $((SECONDS - start))s"
}

build_kube_into() {
  local out=$1 v=$KUBE_VERSION minor gomod
  minor=$(echo "$v" | cut -d. -f2)
  gomod=$(module_gomod "k8s.io/kubernetes@$v")
  mkdir -p "$out/src" "$out/bin"
  {
    echo "module strata.dev/hack/kubernetes"
    echo
    awk '$1 == "go" {print; exit}' "$gomod"
    echo
    grep '^godebug' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # Each staging module, as listed in the release's own replace block,
    # resolves to its published v0.<minor>.<patch> twin.
    sed -n '/^replace (/,/^)/p' "$gomod" | awk -v pv="v0${v#v1}" \
      '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, pv}'
    echo ")"
  } > "$out/src/go.mod"
  log "Kubernetes $v: $(grep -c ' => ' "$out/src/go.mod") staging modules replaced"
  cat > "$out/src/tools.go" <<GO
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  local pkg=k8s.io/component-base/version
  ( cd "$out/src" && go_env && go mod tidy && go build -trimpath -tags=selinux,notest \
      -ldflags "-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$v" \
      -o "$out/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl )
  "$out/bin/kube-apiserver" --version | grep -qx "Kubernetes $v"
  rm -rf "$out/src"
}

build_etcd_into() {
  local out=$1
  mkdir -p "$out/src" "$out/bin"
  cat > "$out/src/go.mod" <<MOD
module strata.dev/hack/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$out/src/tools.go"
  ( cd "$out/src" && go_env && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3 )
  "$out/bin/etcd" --version | grep -q "etcd Version: ${ETCD_VERSION#v}"
  rm -rf "$out/src"
}

build_kwok_into() {
  local out=$1 src
  mkdir -p "$out/bin" "$out/stages"
  ( go_env && GOBIN="$out/bin" go install -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" )
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  # Node stages make nodes Ready and keep their leases fresh; pod stages take
  # scheduled pods to Running and Ready (and finish deleted ones).
  cp "$src"/kustomize/stage/node/fast/*.yaml "$out/stages/"
  cp "$src"/kustomize/stage/node/heartbeat-with-lease/*.yaml "$out/stages/"
  cp "$src"/kustomize/stage/pod/fast/*.yaml "$out/stages/"
  chmod -R u+w "$out/stages"
  ls "$out/stages" | grep -q yaml
}

# build_helm_into: helm v3 from its own module (no replace or exclude
# directives, so `go install module@version` builds it exactly as released),
# with the ldflags of helm's Makefile: its version, and the Kubernetes minor
# of its client-go as the default `.Capabilities.KubeVersion` of `helm
# template` and the target of `helm lint`'s deprecation check (1.20 without).
build_helm_into() {
  local out=$1 gomod client_go minor pkg=helm.sh/helm/v3
  gomod=$(module_gomod "$pkg@$HELM_VERSION")
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  minor=$(echo "$client_go" | cut -d. -f2)
  [ -n "$minor" ] || die "no k8s.io/client-go requirement in helm $HELM_VERSION's go.mod"
  mkdir -p "$out/bin"
  ( go_env && GOBIN="$out/bin" go install -trimpath -ldflags "-s -w \
      -X $pkg/internal/version.version=$HELM_VERSION -X $pkg/internal/version.gitTreeState=clean \
      -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$minor \
      -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$minor" \
      "$pkg/cmd/helm@$HELM_VERSION" )
  "$out/bin/helm" version --template '{{.Version}}' | grep -qx "$HELM_VERSION"
}

# build_kstatus_into: hack/kstatus (a tiny program printing kstatus'
# status.Compute verdict for an object on stdin) against the pinned
# sigs.k8s.io/cli-utils. The cache entry is keyed by that version and a
# digest of the program's sources (see kstatus_cache_name).
build_kstatus_into() {
  local out=$1 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../kstatus" && pwd)
  mkdir -p "$out/src" "$out/bin"
  cp "$here/main.go" "$out/src/"
  sed "s|^require sigs.k8s.io/cli-utils .*|require sigs.k8s.io/cli-utils $KSTATUS_CLI_UTILS_VERSION|" \
    "$here/go.mod" > "$out/src/go.mod"
  ( cd "$out/src" && go_env && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$out/bin/kstatus" . )
  echo '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"probe"}}' | "$out/bin/kstatus" | grep -q '"Current"'
  rm -rf "$out/src"
}

# kstatus_cache_name: kstatus-<cli-utils version>-<digest of hack/kstatus>.
kstatus_cache_name() {
  local here digest
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../kstatus" && pwd)
  digest=$(cat "$here/go.mod" "$here/main.go" | sha256sum | cut -c1-12)
  echo "kstatus-$KSTATUS_CLI_UTILS_VERSION-$digest"
}

# build_gitserver_into: hack/gitserver (Git's smart HTTP protocol, for the
# Flux tests), with the standard library only. Keyed by a digest of its
# sources (see gitserver_cache_name).
build_gitserver_into() {
  local out=$1 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../gitserver" && pwd)
  mkdir -p "$out/src" "$out/bin"
  cp "$here/main.go" "$here/go.mod" "$out/src/"
  ( cd "$out/src" && go_env && go build -trimpath -ldflags "-s -w" -o "$out/bin/gitserver" . )
  [ -x "$out/bin/gitserver" ]
  rm -rf "$out/src"
}

# gitserver_cache_name: gitserver-<digest of hack/gitserver>.
gitserver_cache_name() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../gitserver" && pwd)
  echo "gitserver-$(cat "$here/go.mod" "$here/main.go" | sha256sum | cut -c1-12)"
}

# build_flux_controller_into OUT CONTROLLER VERSION: one Flux controller
# (github.com/fluxcd/CONTROLLER at VERSION) into OUT/bin, its CRDs into
# OUT/crds. Its go.mod replaces its api module with ./api, which `go install
# module@version` refuses, so it is built from a module of ours that
# requires it: the controller's own go.mod and go.sum (the same versions of
# every dependency, and the same replace directives but that one), plus the
# controller itself. Only the modules of the packages built are downloaded.
build_flux_controller_into() {
  local out=$1 name=$2 version=$3 module=github.com/fluxcd/$2 dir src
  src=$out/src/$name
  mkdir -p "$src" "$out/bin" "$out/crds"
  dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -f "$dir/main.go" ] || die "no main.go in $module@$version (module cache: $dir)"
  sed -e "s|^module .*|module strata.dev/hack/$name|" \
      -e "\|^replace $module/api => ./api\$|d" "$dir/go.mod" > "$src/go.mod"
  printf '\nrequire %s %s\n' "$module" "$version" >> "$src/go.mod"
  local dep dep_version
  while read -r dep dep_version; do
    [ -n "$dep" ] && printf 'replace %s => %s %s\n' "$dep" "$dep" "$dep_version" >> "$src/go.mod"
  done <<< "$FLUX_REPLACES"
  cp "$dir/go.sum" "$src/go.sum"
  chmod u+w "$src/go.sum"
  ( cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out/bin/$name" "$module" )
  local usage
  usage=$("$out/bin/$name" --help 2>&1 || true)
  grep -q -- '--watch-all-namespaces' <<< "$usage" || die "$name --help: $usage"
  cp "$dir"/config/crd/bases/*.yaml "$out/crds/"
  chmod u+w "$out"/crds/*.yaml
}

# build_flux_into: source-controller and kustomize-controller (FLUX_*
# versions), with a build cache of their own that is dropped afterwards:
# nothing else reuses it, and it is several times the size of the binaries.
build_flux_into() {
  local out=$1
  (
    go_env
    export GOCACHE=$out/gocache
    build_flux_controller_into "$out" source-controller "$FLUX_SOURCE_CONTROLLER_VERSION"
    build_flux_controller_into "$out" kustomize-controller "$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
  )
  chmod -R u+w "$out/gocache" "$out/src" 2> /dev/null || true
  rm -rf "$out/gocache" "$out/src"
  ls "$out/crds" | grep -q gitrepositories
  ls "$out/crds" | grep -q kustomizations
}

# flux_cache_name: flux-<source-controller>-<kustomize-controller versions>.
flux_cache_name() {
  echo "flux-source-$FLUX_SOURCE_CONTROLLER_VERSION-kustomize-$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
}

# prometheus_release: the Prometheus release of module PROMETHEUS_VERSION
# (v0.316.0 is 3.16.0).
prometheus_release() {
  local minor patch
  minor=${PROMETHEUS_VERSION#v0.}
  patch=${minor#*.}
  minor=${minor%%.*}
  echo "$((minor / 100)).$((minor % 100)).$patch"
}

# build_prometheus_into: prometheus and promtool from the Prometheus module
# (no replace or exclude directives, so `go install module@version` builds
# them as released), with the version ldflags of its Makefile (promu). The
# tag remove_all_sd leaves out every service discovery but the file and
# HTTP ones: a test Prometheus scrapes static targets, and the cloud SDKs
# would triple the build. A private build cache, dropped afterwards: nothing
# else links these packages, and the binaries are what is kept.
build_prometheus_into() {
  local out=$1 release pkg=github.com/prometheus/common/version
  release=$(prometheus_release)
  mkdir -p "$out/bin"
  ( go_env && export GOCACHE="$out/.gocache" GOBIN="$out/bin" \
      && go install -trimpath -tags remove_all_sd -ldflags "-s -w \
      -X $pkg.Version=$release -X $pkg.Revision=$PROMETHEUS_VERSION -X $pkg.Branch=HEAD \
      -X $pkg.BuildUser=strata -X $pkg.BuildDate=19700101-00:00:00" \
      "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
      "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" )
  rm -rf "$out/.gocache"
  "$out/bin/promtool" --version | grep -q "version $release"
  "$out/bin/prometheus" --version | grep -q "version $release"
}

# build_all: everything `up` needs, cold or warm.
build_all() {
  KUBE_VERSION=$(select_kube_version)
  in_scratch "etcd-$ETCD_VERSION" build_etcd_into
  in_scratch "kwok-$KWOK_VERSION" build_kwok_into
  in_scratch "k8s-$KUBE_VERSION" build_kube_into
  in_scratch "helm-$HELM_VERSION" build_helm_into
  in_scratch "$(kstatus_cache_name)" build_kstatus_into
  in_scratch "prometheus-$PROMETHEUS_VERSION" build_prometheus_into
  in_scratch "$(gitserver_cache_name)" build_gitserver_into
  in_scratch "$(flux_cache_name)" build_flux_into
  KUBE_BIN="$STRATA_CACHE/k8s-$KUBE_VERSION/bin"
  ETCD_BIN="$STRATA_CACHE/etcd-$ETCD_VERSION/bin"
  KWOK_DIR="$STRATA_CACHE/kwok-$KWOK_VERSION"
  HELM_BIN="$STRATA_CACHE/helm-$HELM_VERSION/bin"
  KSTATUS_BIN="$STRATA_CACHE/$(kstatus_cache_name)/bin"
  PROMETHEUS_BIN="$STRATA_CACHE/prometheus-$PROMETHEUS_VERSION/bin"
  FLUX_DIR="$STRATA_CACHE/$(flux_cache_name)"
}
