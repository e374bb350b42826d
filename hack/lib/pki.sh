# shellcheck shell=bash
# Certificates and keys for the local control plane. Sourced by hack/plane.
#
# One throwaway CA signs everything: the apiserver's serving certificate (so a
# kubeconfig needs a single CA file) and every client certificate (the
# apiserver trusts it through --client-ca-file). Identities follow kubeadm:
# the admin is in group system:masters, the controller manager and scheduler
# use their bootstrap-RBAC users, so RBAC is exercised as in a real cluster.
#
# EC P-256 keys: generated in milliseconds and accepted by every component.

# pki_key FILE: a fresh P-256 private key.
pki_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

# pki_ca DIR: a self-signed CA as DIR/ca.{crt,key}.
pki_ca() {
  local dir=$1
  pki_key "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
    -subj "/CN=strata-plane-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$dir/ca.crt" 2>/dev/null
}

# pki_cert DIR NAME SUBJECT EXTENSIONS: DIR/NAME.{crt,key} signed by DIR/ca.
# EXTENSIONS is an openssl extension section body, one per line.
pki_cert() {
  local dir=$1 name=$2 subj=$3 ext=$4
  pki_key "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "$subj" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -sha256 -days 3650 -extfile <(printf '%s\n' "$ext") \
    -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr"
}

# pki_client_cert DIR NAME CN [ORG]: a client certificate for user CN in group ORG.
pki_client_cert() {
  local subj="/CN=$3"
  [ -n "${4:-}" ] && subj="/O=$4$subj"
  pki_cert "$1" "$2" "$subj" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
}

# pki_all DIR: everything the plane needs, written to DIR.
pki_all() {
  local dir=$1
  mkdir -p "$dir"
  chmod 700 "$dir"
  pki_ca "$dir"
  # The serving certificate covers loopback and the in-cluster names of the
  # `kubernetes` Service (first address of --service-cluster-ip-range).
  pki_cert "$dir" apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  pki_client_cert "$dir" admin strata-admin system:masters
  pki_client_cert "$dir" kube-controller-manager system:kube-controller-manager
  pki_client_cert "$dir" kube-scheduler system:kube-scheduler
  # The apiserver's identity towards aggregated API servers (front proxy).
  pki_client_cert "$dir" front-proxy-client front-proxy-client
  # Service-account tokens: the apiserver signs with the private key, the
  # controller manager signs the legacy token Secrets with the same key, and
  # both verify with the public half.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/sa.key" 2>/dev/null
  chmod 600 "$dir/sa.key"
  openssl pkey -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE SERVER DIR NAME: a self-contained kubeconfig that
# authenticates with DIR/NAME.{crt,key} and trusts DIR/ca.crt.
write_kubeconfig() {
  local file=$1 server=$2 dir=$3 name=$4
  cat > "$file" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: strata-plane
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 < "$dir/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 < "$dir/$name.crt")
    client-key-data: $(base64 -w0 < "$dir/$name.key")
contexts:
- name: strata-plane
  context:
    cluster: strata-plane
    user: $name
current-context: strata-plane
YAML
  chmod 600 "$file"
}
