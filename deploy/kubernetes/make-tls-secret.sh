#!/usr/bin/env bash
# make-tls-secret.sh: the mTLS material of deploy/kubernetes, as the Secret
# spoolfs-tls that the replica and mail pods mount at /etc/spoolfs/tls.
#
#   deploy/kubernetes/make-tls-secret.sh [-d DIR] [--apply | --certs-only]
#
# With `spoolfs certs` it makes, in DIR (default ./spoolfs-pki):
#   DIR/ca/ca.crt, DIR/ca/ca.key   the cluster's CA, once. ca.key is never
#                                  put in the Secret: keep DIR somewhere safe
#                                  and offline, it signs every node.
#   DIR/nodes/POD.crt, POD.key     a pair per pod, named after it (CN = the pod
#                                  name = its node id): spoolfs-replica-0..R-1,
#                                  whose SANs are the names mail pods dial
#                                  (spoolfs-replica-N.spoolfs-replica, and the
#                                  longer forms), and mail-0..M-1. A pair that
#                                  exists is kept: delete DIR/nodes to renew.
# then writes the Secret to DIR/spoolfs-tls.yaml (kubectl create secret
# generic --dry-run=client -o yaml: nothing reaches the cluster), to apply
# with `kubectl apply -f DIR/spoolfs-tls.yaml`.
#   --apply       apply the Secret as well (kubectl apply -f -)
#   --certs-only  stop after the certificates (kubectl is not needed)
#
# Environment: SPOOLFS (the spoolfs binary; default: spoolfs on PATH, e.g.
# bin/spoolfs after `make build`), NAMESPACE (mail-spool, as in
# base/kustomization.yaml), REPLICAS (3: the replica StatefulSet's
# replicas), MAIL_PODS (2: the mail StatefulSet's; scaling it up needs a
# pair for each new pod, so run this again), CLUSTER_DOMAIN (cluster.local),
# DAYS (validity of the node certificates, 365).
set -euo pipefail

me=make-tls-secret.sh
SPOOLFS=${SPOOLFS:-spoolfs}
NAMESPACE=${NAMESPACE:-mail-spool}
REPLICAS=${REPLICAS:-3}
MAIL_PODS=${MAIL_PODS:-2}
CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
DAYS=${DAYS:-365}
SECRET=spoolfs-tls
# What the manifests name: the replica StatefulSet and its headless
# Service, and the mail StatefulSet.
REPLICA_SET=spoolfs-replica
REPLICA_SERVICE=spoolfs-replica
MAIL_SET=mail

die() {
	echo "$me: $*" >&2
	exit 1
}

usage() {
	echo "usage: $me [-d DIR] [--apply | --certs-only]" >&2
	exit 2
}

dir=spoolfs-pki
mode=secret
while [ $# -gt 0 ]; do
	case $1 in
	-d | --dir)
		[ $# -ge 2 ] || usage
		dir=$2
		shift 2
		;;
	--apply) mode=apply && shift ;;
	--certs-only) mode=certs && shift ;;
	-h | --help)
		sed -n '2,/^set -e/s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*) usage ;;
	esac
done

case $REPLICAS$MAIL_PODS$DAYS in
*[!0-9]*) die "REPLICAS, MAIL_PODS and DAYS must be numbers" ;;
esac
command -v "$SPOOLFS" >/dev/null || die "no spoolfs binary ($SPOOLFS): build it (make build) and set SPOOLFS=bin/spoolfs"
if [ "$mode" != certs ]; then
	command -v kubectl >/dev/null || die "kubectl is not installed (--certs-only makes the certificates without it)"
fi

# Everything written here is private.
umask 077
ca=$dir/ca
nodes=$dir/nodes
mkdir -p "$ca" "$nodes"

if [ -e "$ca/ca.crt" ] || [ -e "$ca/ca.key" ]; then
	if [ ! -e "$ca/ca.crt" ] || [ ! -e "$ca/ca.key" ]; then
		die "$ca: ca.crt or ca.key is missing (delete both to make a new CA)"
	fi
	echo "$me: using the CA in $ca"
else
	"$SPOOLFS" certs ca --dir "$ca" --name "spoolfs CA ($NAMESPACE)" >/dev/null
	echo "$me: made the CA in $ca (keep ca.key offline)"
fi

# replica_hosts N: the names a primary may dial replica N by, from the
# shortest (the one the mail pods' --replicas use) to the fully qualified.
replica_hosts() {
	local pod=$REPLICA_SET-$1.$REPLICA_SERVICE
	echo "$pod,$pod.$NAMESPACE,$pod.$NAMESPACE.svc,$pod.$NAMESPACE.svc.$CLUSTER_DOMAIN"
}

# mail_hosts N: mail pods only dial, nobody dials them over mTLS, but a
# certificate names at least one host: the pod's own name.
mail_hosts() {
	local pod=$MAIL_SET-$1.$MAIL_SET
	echo "$pod,$pod.$NAMESPACE.svc.$CLUSTER_DOMAIN"
}

# issue ID HOSTS: a pair for node ID, unless it has one.
issued=()
issue() {
	local id=$1 hosts=$2
	issued+=("$id")
	if [ -e "$nodes/$id.crt" ] || [ -e "$nodes/$id.key" ]; then
		if [ ! -e "$nodes/$id.crt" ] || [ ! -e "$nodes/$id.key" ]; then
			die "$nodes: $id.crt or $id.key is missing (delete both to issue a new pair)"
		fi
		echo "$me: kept $nodes/$id.crt"
		return
	fi
	"$SPOOLFS" certs node --ca "$ca" --out "$nodes" --id "$id" --host "$hosts" --days "$DAYS" >/dev/null
	echo "$me: issued $nodes/$id.crt for $hosts"
}

for ((i = 0; i < REPLICAS; i++)); do
	issue "$REPLICA_SET-$i" "$(replica_hosts "$i")"
done
for ((i = 0; i < MAIL_PODS; i++)); do
	issue "$MAIL_SET-$i" "$(mail_hosts "$i")"
done

if [ "$mode" = certs ]; then
	exit 0
fi

# The Secret: the CA's certificate (not its key) and every pod's pair.
from=(--from-file="ca.crt=$ca/ca.crt")
for id in "${issued[@]}"; do
	from+=(--from-file="$id.crt=$nodes/$id.crt" --from-file="$id.key=$nodes/$id.key")
done
out=$dir/$SECRET.yaml
kubectl create secret generic "$SECRET" --namespace "$NAMESPACE" "${from[@]}" \
	--dry-run=client -o yaml >"$out.tmp"
mv "$out.tmp" "$out"
if [ "$mode" = apply ]; then
	kubectl apply -f "$out"
	echo "$me: applied $out; pods read it when they start: kubectl -n $NAMESPACE rollout restart statefulset/$REPLICA_SET statefulset/$MAIL_SET"
else
	echo "$me: wrote $out (private keys: keep it private); apply with: kubectl apply -f $out"
fi
