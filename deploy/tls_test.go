package deploy

// mTLS in the deployment files. Kubernetes: every spoolfs container that
// talks to other nodes passes --tls-ca/--tls-cert/--tls-key naming files of
// the spoolfs-tls Secret, mounted read-only where its user can read them,
// named after its pod (POD_NAME from metadata.name); make-tls-secret.sh,
// run with its defaults, issues a pair for every pod of those StatefulSets,
// with the names the mail pods dial among the replicas' SANs, and a Secret
// holding exactly those pairs and the CA's certificate (never its key).
// systemd: the replica unit gets its files as credentials, the mount
// example and the node.yaml example name them.

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/testsupport"
	"github.com/spoolfs/spoolfs/internal/tlsid"
)

const (
	tlsDir    = "/etc/spoolfs/tls"
	tlsSecret = "spoolfs-tls"
	tlsScript = "kubernetes/make-tls-secret.sh"
	podName   = "$(POD_NAME)"
)

// tlsFlagFiles: each flag and the file name it must have in the Secret.
var tlsFlagFiles = map[string]string{"--tls-ca": "ca.crt", "--tls-cert": podName + ".crt", "--tls-key": podName + ".key"}

// talksToNodes: the spoolfs commands that dial or serve other nodes.
func talksToNodes(cmd []string) bool {
	if len(cmd) < 2 || cmd[0] != "spoolfs" {
		return false
	}
	switch cmd[1] {
	case "replica", "run":
		return true
	case "mount", "status":
		return flagValue(cmd, "--replicas") != ""
	}
	return false
}

type nodeContainer struct {
	w podTemplate
	c corev1.Container
}

func (n nodeContainer) String() string { return fmt.Sprintf("%s container %s", n.w, n.c.Name) }

func (n nodeContainer) argv() []string { return append(slices.Clone(n.c.Command), n.c.Args...) }

// nodeContainers returns the containers that talk to other nodes, and
// fails unless the replica workload and both mail workloads have one.
func nodeContainers(t *testing.T) []nodeContainer {
	t.Helper()
	var out []nodeContainer
	byComponent := map[string]int{}
	for _, w := range workloads(t) {
		for _, c := range append(slices.Clone(w.spec.InitContainers), w.spec.Containers...) {
			if talksToNodes(append(slices.Clone(c.Command), c.Args...)) {
				out = append(out, nodeContainer{w, c})
				byComponent[w.meta["app.kubernetes.io/component"]]++
			}
		}
	}
	if byComponent["replica"] != 1 || byComponent["mail"] != 2 {
		t.Fatalf("containers that talk to other nodes, by component: %v; want replica: 1, mail: 2", byComponent)
	}
	return out
}

func TestTLSFlagsInManifests(t *testing.T) {
	for _, n := range nodeContainers(t) {
		checkPodNameEnv(t, n)
		argv := n.argv()
		for flag, file := range tlsFlagFiles {
			p := flagValue(argv, flag)
			if p == "" {
				t.Errorf("%s: no %s", n, flag)
				continue
			}
			if path.Base(p) != file {
				t.Errorf("%s: %s %s: want the Secret's %s", n, flag, p, file)
			}
			checkSecretFile(t, n, flag, p)
		}
		if id := flagValue(argv, "--node-id"); id != "" && id != podName {
			t.Errorf("%s: --node-id %s: with mTLS the node id is the certificate's CN, the pod name (%s)", n, id, podName)
		}
	}
}

// checkPodNameEnv: $(POD_NAME) in a command expands only for a variable
// of the container's env.
func checkPodNameEnv(t *testing.T, n nodeContainer) {
	t.Helper()
	for _, e := range n.c.Env {
		if e.Name == "POD_NAME" {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s: POD_NAME does not come from metadata.name", n)
			}
			return
		}
	}
	t.Errorf("%s: no POD_NAME in env: $(POD_NAME) would not expand", n)
}

// checkSecretFile: p is under a read-only mount of the spoolfs-tls Secret
// (all of it: no items, no subPath), 0400 or 0440, readable by the
// container's user.
func checkSecretFile(t *testing.T, n nodeContainer, flag, p string) {
	t.Helper()
	var mount *corev1.VolumeMount
	for i, m := range n.c.VolumeMounts {
		if m.SubPath == "" && strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") &&
			(mount == nil || len(m.MountPath) > len(mount.MountPath)) {
			mount = &n.c.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Errorf("%s: %s %s is under no volume mount", n, flag, p)
		return
	}
	i := slices.IndexFunc(n.w.spec.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name })
	if i < 0 || n.w.spec.Volumes[i].Secret == nil {
		t.Errorf("%s: %s %s: volume %s is not a Secret volume", n, flag, p, mount.Name)
		return
	}
	s := n.w.spec.Volumes[i].Secret
	switch {
	case s.SecretName != tlsSecret:
		t.Errorf("%s: %s: Secret %q, want %q (make-tls-secret.sh)", n, flag, s.SecretName, tlsSecret)
	case len(s.Items) > 0:
		t.Errorf("%s: %s: Secret %s with items: one template serves every pod, which needs its own pair", n, flag, s.SecretName)
	case s.Optional != nil && *s.Optional:
		t.Errorf("%s: %s: Secret %s is optional: a pod must not start without its pair", n, flag, s.SecretName)
	}
	if !mount.ReadOnly {
		t.Errorf("%s: the Secret volume %s is not mounted read-only", n, mount.Name)
	}
	mode := int32(0o644) // the API's default
	if s.DefaultMode != nil {
		mode = *s.DefaultMode
	}
	if mode != 0o400 && mode != 0o440 {
		t.Errorf("%s: Secret %s defaultMode %#o, want 0400 or 0440 (private keys)", n, s.SecretName, mode)
	}
	if flag == "--tls-key" && !secretReadable(n, mode) { // once per container
		t.Errorf("%s: cannot read the Secret's files (mode %#o): run as uid 0 (their owner), or give 0440 and an fsGroup", n, mode)
	}
}

// secretReadable: Secret files belong to root and, with an fsGroup, to
// that group.
func secretReadable(n nodeContainer, mode int32) bool {
	pod := n.w.spec.SecurityContext
	uid := pod.RunAsUser
	if sc := n.c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	if uid != nil && *uid == 0 {
		return true
	}
	return mode&0o040 != 0 && pod.FSGroup != nil
}

// TestTLSSecretScript runs make-tls-secret.sh with its defaults (and, when
// kubectl is installed, its Secret step, which stays offline) and checks
// what it makes against the manifests.
func TestTLSSecretScript(t *testing.T) {
	bin := spoolfsBin(t)
	dir := filepath.Join(t.TempDir(), "pki")
	out := runTLSScript(t, bin, dir, "--certs-only")
	if strings.Contains(out, "kept") {
		t.Errorf("a first run kept pairs it cannot have had:\n%s", out)
	}
	pool := x509.NewCertPool()
	for _, c := range readCertFile(t, filepath.Join(dir, "ca", "ca.crt")) {
		pool.AddCert(c)
	}
	pods := tlsPods(t)
	certs := map[string]*x509.Certificate{}
	for _, pod := range pods {
		certs[pod] = checkPodPair(t, dir, pod, pool)
	}
	checkDialedNames(t, certs, pool)

	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Logf("kubectl is not installed: the Secret step of %s is not checked", tlsScript)
		return
	}
	before, _ := os.ReadFile(filepath.Join(dir, "nodes", pods[0]+".crt"))
	out = runTLSScript(t, bin, dir)
	if after, _ := os.ReadFile(filepath.Join(dir, "nodes", pods[0]+".crt")); !bytes.Equal(before, after) || !strings.Contains(out, "kept") {
		t.Errorf("a second run did not keep the pairs it had made:\n%s", out)
	}
	checkSecretYAML(t, filepath.Join(dir, tlsSecret+".yaml"), pods)
}

func runTLSScript(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tlsScript, append([]string{"-d", dir}, args...)...)
	// The script's defaults, not whatever the caller's environment says;
	// no kubeconfig: nothing may reach a cluster.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains([]string{"SPOOLFS", "NAMESPACE", "REPLICAS", "MAIL_PODS", "CLUSTER_DOMAIN", "DAYS", "KUBECONFIG"}, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "SPOOLFS="+bin, "KUBECONFIG="+os.DevNull)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", tlsScript, args, err, out)
	}
	return string(out)
}

// tlsPods: every pod of the StatefulSets whose containers use mTLS.
func tlsPods(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var pods []string
	for _, n := range nodeContainers(t) {
		sts, ok := n.w.obj.(*appsv1.StatefulSet)
		if !ok {
			t.Fatalf("%s: mTLS pairs are named after StatefulSet pods; got a %s", n, n.w.kind)
		}
		for i := range int(*sts.Spec.Replicas) {
			if p := fmt.Sprintf("%s-%d", sts.Name, i); !seen[p] {
				seen[p] = true
				pods = append(pods, p)
			}
		}
	}
	sort.Strings(pods)
	return pods
}

// checkPodPair: pod's pair exists, the key is private, and the certificate
// names the pod and chains to the CA for serving and dialing.
func checkPodPair(t *testing.T, dir, pod string, pool *x509.CertPool) *x509.Certificate {
	t.Helper()
	certs := readCertFile(t, filepath.Join(dir, "nodes", pod+".crt"))
	c := certs[0]
	if c.Subject.CommonName != pod {
		t.Errorf("%s.crt: CN %q, want the pod name", pod, c.Subject.CommonName)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("%s.crt: %v", pod, err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, "nodes", pod+".key"))
	if err != nil {
		t.Errorf("%s: no key: %v", pod, err)
	} else if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s.key: mode %v, want private", pod, st.Mode().Perm())
	}
	return c
}

// checkDialedNames: every replica name the mail pods dial is a SAN of that
// replica's certificate, and so is its fully qualified name in the
// kustomization's namespace.
func checkDialedNames(t *testing.T, certs map[string]*x509.Certificate, pool *x509.CertPool) {
	t.Helper()
	ns := baseNamespace(t)
	for _, w := range mailWorkloads(t) {
		args, _ := spoolfsMount(t, w.String(), w.spec.Containers[0].Command)
		for _, addr := range strings.Split(flagValue(args, "--replicas"), ",") {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: --replicas %s: %v", w, addr, err)
				continue
			}
			pod, _, _ := strings.Cut(host, ".")
			c := certs[pod]
			if c == nil {
				t.Errorf("%s: dials %s, but %s made no pair for %s", w, host, tlsScript, pod)
				continue
			}
			for _, name := range []string{host, host + "." + ns + ".svc.cluster.local"} {
				if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
					t.Errorf("%s dialed as %s: %v", pod, name, err)
				}
			}
		}
	}
}

func baseNamespace(t *testing.T) string {
	t.Helper()
	for _, d := range loadDocs(t) {
		if k, ok := d.obj.(*kustomization); ok && d.file == filepath.Join(k8sDir, "base", "kustomization.yaml") {
			if k.Namespace == "" {
				t.Fatalf("%s: no namespace", d.file)
			}
			return k.Namespace
		}
	}
	t.Fatal("no base/kustomization.yaml")
	return ""
}

// checkSecretYAML: the Secret the pods mount, in their namespace, with the
// CA's certificate and each pod's pair, and nothing else.
func checkSecretYAML(t *testing.T, file string, pods []string) {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s: mode %v: it holds private keys", file, st.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if s.Kind != "Secret" || s.Name != tlsSecret || s.Namespace != baseNamespace(t) {
		t.Errorf("%s: %s %s/%s, want Secret %s/%s", file, s.Kind, s.Namespace, s.Name, baseNamespace(t), tlsSecret)
	}
	want := []string{"ca.crt"}
	for _, p := range pods {
		want = append(want, p+".crt", p+".key")
	}
	var got []string
	for k := range s.Data {
		got = append(got, k)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: keys %q, want %q", file, got, want)
	}
	ca, _ := os.ReadFile(filepath.Join(filepath.Dir(file), "ca", "ca.crt"))
	if !bytes.Equal(s.Data["ca.crt"], ca) {
		t.Errorf("%s: ca.crt is not the CA's certificate", file)
	}
}

func readCertFile(t *testing.T, file string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		t.Fatalf("%s: no certificate", file)
	}
	return certs
}

// TestShellScripts: shellcheck-clean when shellcheck is installed (CI does
// not install it); executable either way.
func TestShellScripts(t *testing.T) {
	scripts := []string{tlsScript, filepath.Join(sdDir, "mount.fuse.spoolfs")}
	for _, s := range scripts {
		st, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
	sc := testsupport.RequireCmd(t, "shellcheck")
	if out, err := exec.Command(sc, scripts...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// ---- systemd ----

var credentialFlag = regexp.MustCompile(`--tls-(ca|cert|key) %d/(\S+)`)

// TestSystemdReplicaTLS: the replica unit's --tls-* files are credentials
// systemd loads from /etc/spoolfs/tls (the dynamic user could not read
// them there).
func TestSystemdReplicaTLS(t *testing.T) {
	s := unitFile(t, "spoolfs-replica.service")["Service"]
	creds := map[string]string{}
	for _, v := range s["LoadCredential"] {
		id, src, _ := strings.Cut(v, ":")
		creds[id] = src
	}
	start := strings.Join(s["ExecStart"], " ")
	m := credentialFlag.FindAllStringSubmatch(start, -1)
	if len(m) != 3 {
		t.Fatalf("ExecStart %q: want --tls-ca, --tls-cert and --tls-key, each %%d/CREDENTIAL", start)
	}
	for _, f := range m {
		if src := creds[f[2]]; !strings.HasPrefix(src, tlsDir+"/") {
			t.Errorf("--tls-%s %%d/%s: LoadCredential=%s:%s, want a file of %s", f[1], f[2], f[2], src, tlsDir)
		}
	}
}

func TestSystemdMountTLS(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sdDir, "mount.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "SPOOLFS_MOUNT_ARGS="); ok {
			args = strings.Fields(v)
		}
	}
	if flagValue(args, "--replicas") == "" {
		t.Fatalf("mount.env.example: no --replicas in SPOOLFS_MOUNT_ARGS")
	}
	for flag := range tlsFlagFiles {
		if p := flagValue(args, flag); !strings.HasPrefix(p, tlsDir+"/") {
			t.Errorf("mount.env.example: %s %q, want a file of %s", flag, p, tlsDir)
		}
	}
}

// TestExampleConfigTLS: the example's tls section, uncommented, is valid
// with files spoolfs certs makes for its node_id and listen address.
func TestExampleConfigTLS(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("examples", "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var b strings.Builder
	inTLS := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case l == "#tls:":
			inTLS = true
			l = "tls:"
		case inTLS && strings.HasPrefix(l, "#  "):
			l = strings.Replace(l[1:], tlsDir+"/", dir+"/", 1)
		default:
			inTLS = false
		}
		b.WriteString(l + "\n")
	}
	plain, err := config.Parse(data)
	if err != nil {
		t.Fatalf("the example as shipped: %v", err)
	}
	host, _, err := net.SplitHostPort(plain.Listen)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsid.CreateCA(dir, "", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := tlsid.IssueNodeCert(dir, dir, plain.NodeID, []string{host}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("the example with its tls section: %v", err)
	}
	if f := c.TLS.Files(); !f.Enabled() || c.NodeID != plain.NodeID {
		t.Errorf("uncommented, the example has tls %+v and node id %q, want a tls section for %q", c.TLS, c.NodeID, plain.NodeID)
	}
}
