// Package deploy holds what runs spoolfs outside this repository: the
// Kubernetes manifests (kubernetes/), the systemd units and the fstab mount
// helper (systemd/). It has no Go code of its own; its test
// (manifests_test.go) decodes every manifest strictly with the Kubernetes
// API types and checks the invariants the operations guide
// (docs/operations.md) promises: no privileged container, no added
// SYS_ADMIN, limits on every container, probes that fail when the mount
// stops answering, and a mail container that runs under `spoolfs mount`.
// tls_test.go checks mTLS: every container that talks to other nodes
// passes --tls-* files of the spoolfs-tls Secret (made by
// kubernetes/make-tls-secret.sh, which the test runs offline), and the
// systemd units and examples name their certificate files.
//
// grafana/ holds the dashboard and prometheus/ the alert rules (with
// their promtool unit tests) and an example scrape configuration;
// observability_test.go runs promtool on them and checks that every pod
// serving --admin carries the scrape annotations. e2e's
// TestDashboardAndAlertSeries checks that every series they name exists
// in a live /metrics.
package deploy
