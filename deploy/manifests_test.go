package deploy

// The Kubernetes manifests, decoded strictly with the API types (an unknown
// or misspelt field fails), and the promises docs/operations.md makes about
// them checked: no privileged container, no added SYS_ADMIN, limits and
// probes on every container, mail containers that run under
// `spoolfs mount --unshare ... -- exim`, replicas one per zone.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const (
	k8sDir     = "kubernetes"
	mailMount  = "/var/spool/exim4"
	fuseDevice = corev1.ResourceName("squat.ai/fuse")
)

// doc is one YAML document of a manifest file.
type doc struct {
	file string
	n    int // index in the file
	kind string
	obj  any
}

func (d doc) String() string { return fmt.Sprintf("%s#%d (%s)", d.file, d.n, d.kind) }

// kustomization is what deploy's kustomization.yaml files may hold; strict
// decoding refuses anything else.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources"`
}

// newObject returns an empty object of the API type for apiVersion/kind.
func newObject(apiVersion, kind string) (any, error) {
	types := map[string]any{
		"v1/Namespace":                  &corev1.Namespace{},
		"v1/Service":                    &corev1.Service{},
		"v1/ConfigMap":                  &corev1.ConfigMap{},
		"apps/v1/StatefulSet":           &appsv1.StatefulSet{},
		"apps/v1/Deployment":            &appsv1.Deployment{},
		"apps/v1/DaemonSet":             &appsv1.DaemonSet{},
		"policy/v1/PodDisruptionBudget": &policyv1.PodDisruptionBudget{},
		"kustomize.config.k8s.io/v1beta1/Kustomization": &kustomization{},
	}
	obj, ok := types[apiVersion+"/"+kind]
	if !ok {
		return nil, fmt.Errorf("apiVersion %q kind %q: not a type this test knows", apiVersion, kind)
	}
	return obj, nil
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadDocs decodes every YAML document under deploy/kubernetes strictly.
func loadDocs(t *testing.T) []doc {
	t.Helper()
	var docs []doc
	err := filepath.WalkDir(k8sDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, part := range docSep.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			dc, err := decodeDoc(path, i, []byte(part))
			if err != nil {
				t.Errorf("%s#%d: %v", path, i, err)
				continue
			}
			docs = append(docs, dc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatalf("no manifests under %s", k8sDir)
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func decodeDoc(path string, n int, data []byte) (doc, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return doc{}, err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return doc{}, err
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		return doc{}, fmt.Errorf("strict decoding as %s: %w", tm.Kind, err)
	}
	return doc{file: path, n: n, kind: tm.Kind, obj: obj}, nil
}

func TestManifestsDecodeStrictly(t *testing.T) {
	docs := loadDocs(t)
	kinds := map[string]int{}
	for _, d := range docs {
		kinds[d.kind]++
	}
	// The set this directory promises: replicas, their Service and budget,
	// the mail servers (two variants) and their Service.
	for _, k := range []string{"Namespace", "Service", "StatefulSet", "PodDisruptionBudget", "Kustomization"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	bad := "apiVersion: apps/v1\nkind: StatefulSet\nspec:\n  replica: 3\n"
	if _, err := decodeDoc("inline", 0, []byte(bad)); err == nil {
		t.Fatal("a misspelt field (replica) was accepted")
	}
}

// TestKustomizations checks that every resource a kustomization lists
// exists, stays under deploy/kubernetes (directories may be shared, files
// only from their own directory, as kustomize requires), and that every
// manifest is part of some kustomization.
func TestKustomizations(t *testing.T) {
	used := map[string]bool{}
	for _, d := range loadDocs(t) {
		k, ok := d.obj.(*kustomization)
		if !ok {
			continue
		}
		dir := filepath.Dir(d.file)
		used[d.file] = true
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				t.Errorf("%s: resource %s: %v", d.file, r, err)
			case st.IsDir():
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resource %s: a directory without kustomization.yaml", d.file, r)
				}
			case filepath.Dir(p) != dir:
				t.Errorf("%s: resource %s: a file outside the kustomization's directory", d.file, r)
			default:
				used[p] = true
			}
		}
	}
	for _, d := range loadDocs(t) {
		if !used[d.file] {
			t.Errorf("%s is in no kustomization", d.file)
		}
	}
}

// podTemplate is a workload's pod template.
type podTemplate struct {
	doc
	name string
	spec *corev1.PodSpec
	meta map[string]string // template labels
}

func workloads(t *testing.T) []podTemplate {
	t.Helper()
	var out []podTemplate
	for _, d := range loadDocs(t) {
		switch o := d.obj.(type) {
		case *appsv1.StatefulSet:
			out = append(out, podTemplate{d, o.Name, &o.Spec.Template.Spec, o.Spec.Template.Labels})
		case *appsv1.Deployment:
			out = append(out, podTemplate{d, o.Name, &o.Spec.Template.Spec, o.Spec.Template.Labels})
		case *appsv1.DaemonSet:
			out = append(out, podTemplate{d, o.Name, &o.Spec.Template.Spec, o.Spec.Template.Labels})
		}
	}
	if len(out) == 0 {
		t.Fatal("no workloads")
	}
	return out
}

func TestPodInvariants(t *testing.T) {
	for _, w := range workloads(t) {
		checkPodSpec(t, w)
		for _, c := range w.spec.InitContainers {
			checkContainer(t, w, c, false)
		}
		for _, c := range w.spec.Containers {
			checkContainer(t, w, c, true)
		}
	}
}

func checkPodSpec(t *testing.T, w podTemplate) {
	t.Helper()
	s := w.spec
	if s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("%s: shares a host namespace (network/pid/ipc)", w)
	}
	for _, v := range s.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s (use the device plugin for /dev/fuse)", w, v.Name)
		}
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it has no use for", w)
	}
	sc := s.SecurityContext
	if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		t.Errorf("%s: no seccomp profile, or Unconfined", w)
	}
	if sc != nil && sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		t.Errorf("%s: AppArmor Unconfined", w)
	}
	hostUsers := s.HostUsers == nil || *s.HostUsers
	if hostUsers && (sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
		t.Errorf("%s: runs in the host's user namespace without runAsNonRoot", w)
	}
}

func checkContainer(t *testing.T, w podTemplate, c corev1.Container, main bool) {
	t.Helper()
	where := fmt.Sprintf("%s container %s", w, c.Name)
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: does not drop ALL capabilities", where)
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			if n := strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_"); n == "SYS_ADMIN" || n == "ALL" {
				t.Errorf("%s: adds capability %s", where, c)
			}
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
			t.Errorf("%s: no %s limit", where, r)
		}
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", where, r)
		}
	}
	if main && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
		t.Errorf("%s: needs a liveness and a readiness probe", where)
	}
}

// mailContainers returns the containers of the mail workloads, which run
// the spool.
func mailWorkloads(t *testing.T) []podTemplate {
	t.Helper()
	var out []podTemplate
	for _, w := range workloads(t) {
		if w.meta["app.kubernetes.io/component"] == "mail" {
			out = append(out, w)
		}
	}
	if len(out) != 2 {
		t.Fatalf("want 2 mail workloads (host users, and hostUsers: false), got %d", len(out))
	}
	return out
}

// spoolfsMount splits a mail container's command into spoolfs's own
// arguments and the command it runs.
func spoolfsMount(t *testing.T, where string, cmd []string) (args, child []string) {
	t.Helper()
	if len(cmd) < 2 || cmd[0] != "spoolfs" || cmd[1] != "mount" {
		t.Fatalf("%s: command %q is not `spoolfs mount ...`", where, cmd)
	}
	i := slices.Index(cmd, "--")
	if i < 0 {
		t.Fatalf("%s: command %q runs no program inside the mount (no --)", where, cmd)
	}
	return cmd[2:i], cmd[i+1:]
}

// positional returns the arguments that are not flags or flag values.
func positional(args []string) []string {
	withValue := map[string]bool{"--replicas": true, "--capacity": true, "--stop-grace": true,
		"--log-format": true, "-o": true, "--root-owner": true, "--root-mode": true, "--flush-timeout": true,
		"--node-id": true, "--tls-ca": true, "--tls-cert": true, "--tls-key": true, "--admin": true}
	var pos []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case withValue[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			pos = append(pos, a)
		}
	}
	return pos
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func TestMailContainers(t *testing.T) {
	for _, w := range mailWorkloads(t) {
		if len(w.spec.Containers) != 1 {
			t.Errorf("%s: want one container, got %d", w, len(w.spec.Containers))
			continue
		}
		c := w.spec.Containers[0]
		where := fmt.Sprintf("%s container %s", w, c.Name)
		args, child := spoolfsMount(t, where, c.Command)
		if !slices.Contains(args, "--unshare") {
			t.Errorf("%s: spoolfs mount without --unshare", where)
		}
		if pos := positional(args); len(pos) != 2 || pos[0] != "$(POD_NAME)-spool" || pos[1] != mailMount {
			t.Errorf("%s: VOLUME MOUNTPOINT = %q, want [$(POD_NAME)-spool %s]", where, pos, mailMount)
		}
		if !slices.Equal(child, []string{"exim", "-bdf", "-q30m"}) {
			t.Errorf("%s: runs %q, want exim -bdf -q30m (foreground: with -bd exim detaches and spoolfs stops)", where, child)
		}
		if flagValue(args, "--replicas") == "" {
			t.Errorf("%s: no --replicas", where)
		}
		checkMailProbes(t, where, c)
		for _, l := range []corev1.ResourceList{c.Resources.Limits, c.Resources.Requests} {
			if q, ok := l[fuseDevice]; !ok || q.Value() != 1 {
				t.Errorf("%s: want %s: 1 in limits and requests", where, fuseDevice)
			}
		}
		checkMailConfinement(t, w)
	}
}

// checkMailProbes: the liveness probe must fail when the mount stops
// answering: `spoolfs probe` of the mount point with a timeout below the
// probe's own. The readiness probe is spoolfs's /readyz (readiness is
// durability, issue 12) on the admin endpoint the command opens, so SMTP
// stops getting mail spoolfs cannot store.
func checkMailProbes(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	args, _ := spoolfsMount(t, where, c.Command)
	admin := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "admin" && p.ContainerPort == 7480 })
	if flagValue(args, "--admin") != ":7480" || admin < 0 {
		t.Errorf("%s: want --admin :7480 and a container port named admin (7480)", where)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("%s: want a readiness probe GET /readyz on the admin port", where)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.Exec == nil {
			t.Errorf("%s: %s probe is not an exec probe", where, name)
			continue
		}
		cmd := p.Exec.Command
		if len(cmd) < 3 || cmd[0] != "spoolfs" || cmd[1] != "probe" || cmd[len(cmd)-1] != mailMount {
			t.Errorf("%s: %s probe %q, want spoolfs probe ... %s", where, name, cmd, mailMount)
			continue
		}
		if to := flagValue(cmd, "--timeout"); to == "" || p.TimeoutSeconds == 0 {
			t.Errorf("%s: %s probe without --timeout or timeoutSeconds", where, name)
		}
	}
}

func checkMailConfinement(t *testing.T, w podTemplate) {
	t.Helper()
	sc := w.spec.SecurityContext
	if sc.SeccompProfile.Type != corev1.SeccompProfileTypeLocalhost || sc.SeccompProfile.LocalhostProfile == nil ||
		*sc.SeccompProfile.LocalhostProfile != "profiles/spoolfs-mount.json" {
		t.Errorf("%s: want the Localhost seccomp profile profiles/spoolfs-mount.json", w)
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeLocalhost ||
		sc.AppArmorProfile.LocalhostProfile == nil || *sc.AppArmorProfile.LocalhostProfile != "spoolfs-mount" {
		t.Errorf("%s: want the Localhost AppArmor profile spoolfs-mount", w)
	}
}

// TestMailVariants: the hostUsers: false variant is the default one plus
// the changes its comments announce, and nothing else.
func TestMailVariants(t *testing.T) {
	var host, userns *corev1.PodSpec
	for _, w := range mailWorkloads(t) {
		if w.spec.HostUsers != nil && !*w.spec.HostUsers {
			userns = w.spec.DeepCopy()
		} else {
			host = w.spec.DeepCopy()
		}
	}
	if host == nil || userns == nil {
		t.Fatal("want one mail workload with hostUsers: false and one without")
	}
	c := &userns.Containers[0]
	if !slices.Equal(c.SecurityContext.Capabilities.Add, []corev1.Capability{"SETUID", "SETGID"}) {
		t.Errorf("userns variant adds capabilities %q, want SETUID SETGID", c.SecurityContext.Capabilities.Add)
	}
	if sc := userns.SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("userns variant: want runAsUser 0 (root of the pod's user namespace)")
	}
	// Undo the announced differences; what remains must be equal.
	userns.HostUsers = nil
	userns.SecurityContext.RunAsNonRoot = host.SecurityContext.RunAsNonRoot
	userns.SecurityContext.RunAsUser = host.SecurityContext.RunAsUser
	userns.SecurityContext.RunAsGroup = host.SecurityContext.RunAsGroup
	// Who reads the spoolfs-tls files: the host variant's user through
	// fsGroup, the userns variant's root as their owner.
	userns.SecurityContext.FSGroup = host.SecurityContext.FSGroup
	c.SecurityContext.Capabilities.Add = nil
	c.Command = removeArgs(c.Command, "-o", "allow_other", "--root-owner", "--root-mode")
	if !reflect.DeepEqual(host, userns) {
		a, _ := json.MarshalIndent(host, "", " ")
		b, _ := json.MarshalIndent(userns, "", " ")
		t.Errorf("the mail variants differ beyond hostUsers, ids, fsGroup, SETUID/SETGID and mount options:\n%s", lineDiff(string(a), string(b)))
	}
}

// removeArgs drops the given flags (with their values) from cmd.
func removeArgs(cmd []string, flags ...string) []string {
	var out []string
	for i := 0; i < len(cmd); i++ {
		if slices.Contains(flags, cmd[i]) {
			i++
			continue
		}
		out = append(out, cmd[i])
	}
	return out
}

func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out bytes.Buffer
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "- %s\n+ %s\n", x, y)
		}
	}
	return out.String()
}

func replicaSet(t *testing.T) (*appsv1.StatefulSet, *corev1.Service) {
	t.Helper()
	var sts *appsv1.StatefulSet
	svcs := map[string]*corev1.Service{}
	for _, d := range loadDocs(t) {
		switch o := d.obj.(type) {
		case *appsv1.StatefulSet:
			if o.Spec.Template.Labels["app.kubernetes.io/component"] == "replica" {
				sts = o
			}
		case *corev1.Service:
			svcs[o.Name] = o
		}
	}
	if sts == nil {
		t.Fatal("no replica StatefulSet")
	}
	svc := svcs[sts.Spec.ServiceName]
	if svc == nil {
		t.Fatalf("replica StatefulSet: no Service %q", sts.Spec.ServiceName)
	}
	return sts, svc
}

func TestReplicaStatefulSet(t *testing.T) {
	sts, svc := replicaSet(t)
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("want 3 replicas")
	}
	zone := false
	for _, c := range sts.Spec.Template.Spec.TopologySpreadConstraints {
		if c.TopologyKey == "topology.kubernetes.io/zone" && c.MaxSkew == 1 &&
			c.WhenUnsatisfiable == corev1.DoNotSchedule && c.MinDomains != nil && *c.MinDomains == 3 {
			zone = true
		}
	}
	if !zone {
		t.Errorf("replicas: want a zone spread constraint (maxSkew 1, DoNotSchedule, minDomains 3)")
	}
	c := sts.Spec.Template.Spec.Containers[0]
	want := []string{"spoolfs", "replica", "--listen", ":7070", "--data", "/data",
		"--tls-ca", tlsDir + "/ca.crt", "--tls-cert", tlsDir + "/$(POD_NAME).crt", "--tls-key", tlsDir + "/$(POD_NAME).key",
		"--admin", ":7480"}
	if !slices.Equal(c.Command, want) {
		t.Errorf("replica command %q, want %q", c.Command, want)
	}
	// The probes ask the admin endpoint the command opens.
	admin := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "admin" && p.ContainerPort == 7480 })
	for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		wantPath := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
		if admin < 0 || pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Port.String() != "admin" || pr.HTTPGet.Path != wantPath {
			t.Errorf("replicas: want a %s probe GET %s on the admin port 7480", name, wantPath)
		}
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == sts.Spec.VolumeClaimTemplates[0].Name && m.MountPath == "/data"
	}) {
		t.Errorf("replicas: want /data on a volumeClaimTemplate")
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: want headless, publishing not-ready replicas", svc.Name)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 7070 {
		t.Errorf("Service %s: want port 7070", svc.Name)
	}
}

// TestMailReplicasMatchReplicaSet: --replicas names the replica pods by
// their stable DNS names, all three, and nothing else.
func TestMailReplicasMatchReplicaSet(t *testing.T) {
	sts, svc := replicaSet(t)
	var want []string
	for i := range int(*sts.Spec.Replicas) {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, svc.Name, svc.Spec.Ports[0].Port))
	}
	for _, w := range mailWorkloads(t) {
		args, _ := spoolfsMount(t, w.String(), w.spec.Containers[0].Command)
		got := strings.Split(flagValue(args, "--replicas"), ",")
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: --replicas %q, want %q", w, got, want)
		}
	}
}

// seccompProfile is the runtime's JSON format (the fields used here).
type seccompProfile struct {
	DefaultAction string   `json:"defaultAction"`
	Architectures []string `json:"architectures"`
	Syscalls      []struct {
		Comment  string   `json:"comment,omitempty"`
		Names    []string `json:"names"`
		Action   string   `json:"action"`
		ErrnoRet *int     `json:"errnoRet,omitempty"`
	} `json:"syscalls"`
}

func TestProfiles(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(k8sDir, "profiles", "spoolfs-mount.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p seccompProfile
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("seccomp profile: %v", err)
	}
	denied := map[string]bool{}
	for _, s := range p.Syscalls {
		if s.Action == "SCMP_ACT_ERRNO" {
			for _, n := range s.Names {
				denied[n] = true
			}
		}
	}
	for _, need := range []string{"mount", "umount2", "unshare", "clone", "clone3", "statfs", "prctl"} {
		if denied[need] {
			t.Errorf("seccomp profile denies %s, which spoolfs --unshare needs", need)
		}
	}
	for _, never := range []string{"setns", "ptrace", "bpf", "kexec_load", "init_module", "open_by_handle_at", "keyctl", "io_uring_setup"} {
		if !denied[never] {
			t.Errorf("seccomp profile allows %s", never)
		}
	}
	aa, err := os.ReadFile(filepath.Join(k8sDir, "profiles", "spoolfs-mount.apparmor"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{
		"profile spoolfs-mount ",
		"mount fstype=fuse.spoolfs options in (ro, rw, nosuid, nodev, noexec) -> " + mailMount + "/,",
		"umount " + mailMount + "/,",
		"mount options=(rprivate) -> /,",
		"userns,",
	} {
		if !bytes.Contains(aa, []byte("\n  "+rule)) && !bytes.Contains(aa, []byte("\n"+rule)) {
			t.Errorf("AppArmor profile lacks %q", rule)
		}
	}
	if regexp.MustCompile(`(?m)^\s*(mount|deny mount)\s*,`).Match(aa) {
		t.Errorf("AppArmor profile has a bare mount rule (allows every mount, or denies the spool's)")
	}
}
