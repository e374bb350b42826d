# shellcheck shell=bash
# shellcheck disable=SC2153 # STATE and the others are the caller's (below)
# The control plane's components as processes: start, stop and health-check
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.
# Sourced by hack/plane, after hack/lib/build.sh (log, die).
#
# Each component runs detached, in its own session, with its pid in
# $PIDS/<c>.pid and its output appended to $LOGS/<c>.log. The caller sets
# STATE, PKI, PIDS, LOGS and ADMIN_KUBECONFIG, and the binaries and ports of
# plane.env (KUBE_BIN, ETCD_BIN, KWOK_DIR, ETCD_PORT, ETCD_PEER_PORT,
# APISERVER_PORT, KCM_PORT, SCHEDULER_PORT) before starting anything.
#
# Why not kwokctl's binary runtime (kwok v0.8.0, `kwokctl create cluster
# --runtime binary` with --etcd-binary, --kube-apiserver-binary, ... pointing
# at the cached binaries)? It does start these same binaries offline, with
# TLS, RBAC and service-account tokens, but `kwokctl start` and `kwokctl stop`
# take only `cluster` ("unknown command \"component\" for \"kwokctl stop\""),
# while the outage tests stop and restart kube-apiserver alone. Besides, it
# serves the apiserver with the admin certificate and signs service-account
# tokens with the admin key, picks ports counting down from 32767 in each
# kwokctl process (two planes created at once can collide), runs the first
# kubectl on PATH rather than the configured one, and exits 0 when the
# cluster never becomes ready (its readiness waits only log).

# Start order; `down` stops them in reverse. Each name is also the basename
# of its binary, which is how a pid is checked to still be ours.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# -------------------------------------------------------------- processes --

# fail MESSAGE [COMPONENT]: dies, showing the tail of COMPONENT's log first.
fail() {
  local msg=$1 comp=${2:-}
  if [ -n "$comp" ] && [ -f "$LOGS/$comp.log" ]; then
    printf '\n----- last 40 lines of %s -----\n' "$LOGS/$comp.log" >&2
    tail -n 40 "$LOGS/$comp.log" >&2
    printf -- '-----\n' >&2
  fi
  die "$msg (all logs: hack/plane logs-tail; clean up: hack/plane down)"
}

pid_of() { [ -s "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid"; }

# running PID: the process exists and is not a zombie. (Where PID 1 does not
# reap orphans, as in some containers, a stopped component lingers as a
# zombie: it holds no ports or files, so it counts as gone.)
running() {
  local state
  state=$(sed -n 's/^[0-9]* (.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# alive COMPONENT: its recorded pid runs the component's binary (guards
# against a recycled pid being mistaken for, or killed as, ours).
alive() {
  local pid exe
  pid=$(pid_of "$1") || return 1
  running "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [ "${exe##*/}" = "$1" ]
}

# wait_until SECONDS WHAT COMPONENT CMD...: polls CMD until it succeeds. Fails
# at once if COMPONENT's process died, and at the deadline otherwise; either
# way with the tail of COMPONENT's log.
wait_until() {
  local timeout=$1 what=$2 comp=$3
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" > /dev/null 2>&1; do
    if [ -n "$comp" ] && ! alive "$comp"; then
      fail "$comp exited while waiting for $what" "$comp"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "timed out after ${timeout}s waiting for $what" "$comp"
    fi
    sleep 0.3
  done
}

# free_ports N: N distinct ports that were free on 127.0.0.1 just now. All
# sockets stay bound until every port is chosen, so the N never collide.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# launch COMPONENT BINARY ARGS...: starts BINARY in its own session, detached
# from the caller (no terminal, stdin from /dev/null, SIGHUP ignored), so it
# outlives `hack/plane up` and the CI step that ran it. The inner shell
# records its own pid and then execs the binary, so the pid file holds the
# component's pid whether or not setsid had to fork.
launch() {
  local comp=$1 pidfile=$PIDS/$1.pid log=$LOGS/$1.log
  shift
  rm -f "$pidfile"
  printf '=== %s %s\n' "$(date -Is)" "$*" >> "$log"
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
  setsid bash -c 'trap "" HUP; echo $$ > "$0.tmp"; mv "$0.tmp" "$0"; exec 9>&- "$@"' \
    "$pidfile" "$@" < /dev/null >> "$log" 2>&1 &
  local deadline=$((SECONDS + 10)) pid
  until alive "$comp"; do
    pid=$(pid_of "$comp" || true)
    if [ -n "$pid" ] && ! running "$pid"; then fail "$comp exited right after start" "$comp"; fi
    [ "$SECONDS" -lt "$deadline" ] || fail "$comp did not start within 10s" "$comp"
    sleep 0.1
  done
  log "started $comp (pid $(pid_of "$comp"))"
}

# component_ports COMPONENT: the ports COMPONENT listens on (after load_plane_env).
component_ports() {
  case $1 in
    etcd) echo "$ETCD_PORT $ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$APISERVER_PORT" ;;
    kube-controller-manager) echo "$KCM_PORT" ;;
    kube-scheduler) echo "$SCHEDULER_PORT" ;;
    kwok) echo "" ;;
  esac
}

# components_alive: every component's recorded pid runs its binary.
components_alive() {
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
}

# known_component NAME: NAME is one of COMPONENTS.
known_component() {
  local c
  for c in "${COMPONENTS[@]}"; do [ "$c" = "${1:-}" ] && return 0; done
  return 1
}

# ------------------------------------------------------------ health checks --

etcd_healthy() {
  curl -fsS --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" | jq -e '.health == "true"' > /dev/null
}

# api_get PATH: GET against the apiserver as the admin.
api_get() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

apiserver_ready() { [ "$(api_get /readyz)" = ok ]; }

# secure_healthz PORT: kube-controller-manager and kube-scheduler serve
# /healthz without authorization (--authorization-always-allow-paths default)
# on a self-signed certificate.
secure_healthz() { [ "$(curl -fsSk --max-time 5 "https://127.0.0.1:$1/healthz")" = ok ]; }

# wait_healthy COMPONENT: waits for the health endpoint of the controller
# manager or the scheduler (their start_* functions return before it serves,
# so that both can start at once).
wait_healthy() {
  case $1 in
    kube-controller-manager)
      wait_until 60 "kube-controller-manager /healthz" kube-controller-manager secure_healthz "$KCM_PORT"
      ;;
    kube-scheduler)
      wait_until 60 "kube-scheduler /healthz" kube-scheduler secure_healthz "$SCHEDULER_PORT"
      ;;
  esac
}

# ------------------------------------------------------------- components --

start_etcd() {
  # --unsafe-no-fsync: the data is thrown away with the plane; skipping fsync
  # makes every write (and so every apiserver request) much cheaper.
  launch etcd "$ETCD_BIN/etcd" \
    --name=strata-plane \
    --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="strata-plane=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync \
    --auto-compaction-retention=1 \
    --quota-backend-bytes=8589934592 \
    --log-level=warn
  wait_until 60 "etcd /health" etcd etcd_healthy
  log "etcd healthy on 127.0.0.1:$ETCD_PORT"
}

start_apiserver() {
  # The serving certificate is our own (signed by the plane CA) rather than
  # one self-generated into --cert-dir, so one CA file verifies the server
  # and kube-root-ca.crt carries the right CA; --cert-dir stays as the place
  # for anything else the apiserver wants to write.
  # The requestheader (front proxy) settings are published in
  # kube-system/extension-apiserver-authentication; the controller manager
  # and scheduler log errors without them, and aggregated API servers need
  # them.
  # --endpoint-reconciler-type=none: since 1.37 the apiserver refuses to
  # start when it would publish a loopback --advertise-address in the
  # `kubernetes` Endpoints (kubernetes/kubernetes#138102). Nothing in a kwok
  # cluster could reach it through that Service anyway, so the Service stays
  # without endpoints.
  launch kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$STATE/apiserver" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true \
    --profiling="${STRATA_PLANE_PROFILING:-false}"
  wait_until 120 "kube-apiserver /readyz" kube-apiserver apiserver_ready
  log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT"
}

start_controller_manager() {
  local kubeconfig=$STATE/kube-controller-manager.kubeconfig
  # '*' runs every controller that is on by default, among them the garbage
  # collector, deployment, replicaset, namespace, serviceaccount and
  # serviceaccount-token controllers. Each controller gets its own service
  # account (as with kubeadm), so RBAC applies to them as in real clusters.
  # Higher client QPS: creating ~2000 pods at the default 20 QPS takes ~100s.
  launch kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" \
    --kube-api-qps=200 \
    --kube-api-burst=400
}

start_scheduler() {
  local kubeconfig=$STATE/kube-scheduler.kubeconfig
  launch kube-scheduler "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false \
    --kube-api-qps=200 \
    --kube-api-burst=400
}

start_kwok() {
  # Only Stage documents are configuration: the stage directory also holds
  # the kustomization.yaml files copied along with the stages.
  local stage args=()
  for stage in "$KWOK_DIR"/stages/*.yaml; do
    if grep -q '^kind: Stage$' "$stage"; then args+=(--config="$stage"); fi
  done
  [ ${#args[@]} -gt 0 ] || die "no kwok stages in $KWOK_DIR/stages"
  # KWOK_WORKDIR keeps a developer's ~/.kwok/kwok.yaml (loaded implicitly
  # otherwise) out of the plane. kwok serves nothing unless --server-address
  # or --node-port is given, so it needs no port.
  # --node-lease-duration-seconds: bare kwok defaults to 0, which means no
  # node Leases at all (only kwokctl sets 40). The heartbeat stage refreshes
  # node status only every 10-20 minutes, so without Leases the node
  # lifecycle controller marks the nodes unreachable (and taints them) every
  # ~50s, and kwok's initialize stage flips them back: flapping nodes.
  KWOK_WORKDIR="$STATE/kwok" launch kwok "$KWOK_DIR/bin/kwok" \
    --kubeconfig="$ADMIN_KUBECONFIG" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 \
    --cidr=10.0.0.0/16 \
    "${args[@]}"
}

# start_component COMPONENT: the start_* function of COMPONENT, then waits
# until it is healthy.
start_component() {
  case $1 in
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver ;;
    kube-controller-manager)
      start_controller_manager
      wait_healthy kube-controller-manager
      ;;
    kube-scheduler)
      start_scheduler
      wait_healthy kube-scheduler
      ;;
    kwok) start_kwok ;;
  esac
}

# stop_component COMPONENT: SIGTERM, up to 30s to exit, then SIGKILL.
stop_component() {
  local comp=$1 pid deadline
  pid=$(pid_of "$comp") || { rm -f "$PIDS/$comp.pid"; return 0; }
  if alive "$comp"; then
    kill -TERM "$pid" 2> /dev/null || true
    deadline=$((SECONDS + 30))
    while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if running "$pid"; then
      log "$comp (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
      kill -KILL "$pid" 2> /dev/null || true
      deadline=$((SECONDS + 10))
      while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
      running "$pid" && die "$comp (pid $pid) survived SIGKILL"
    fi
    log "stopped $comp (pid $pid)"
  fi
  rm -f "$PIDS/$comp.pid"
}
