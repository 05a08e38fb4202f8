package launch

// --unshare: spoolfs enters new user and mount namespaces by re-executing
// itself, as `unshare -U -m -r -- spoolfs ...` would, so that a user without
// privileges (but with access to /dev/fuse) can mount: inside, spoolfs is
// root of its user namespace, which owns the new mount namespace, and the
// kernel lets it mount FUSE there. The mount is visible only to spoolfs and
// its children, and disappears with them.
//
// The outer process (RunUnshared) starts /proc/self/exe with the same
// arguments minus --unshare and UnshareEnv=1, forwards signals to it and
// exits with its status. The inner process calls EnterUnshared first, which
// makes its mount tree private, then mounts as root does.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// UnshareEnv is the environment variable that marks the process
// re-executed by --unshare. Its value names the mount namespace of the
// process that re-executed it (as /proc/self/ns/mnt reads, "mnt:[N]"), so
// that EnterUnshared can check it is really in another one. It is not passed
// on to a child command.
const UnshareEnv = "SPOOLFS_UNSHARED"

// Unshared reports whether this process is the one re-executed by
// --unshare, inside the new namespaces.
func Unshared() bool { return os.Getenv(UnshareEnv) != "" }

// ChildEnv returns env without the --unshare marker.
func ChildEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, UnshareEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// WithoutUnshareFlag returns args without --unshare (also -unshare and
// --unshare=BOOL), looking only before the "--" that starts a child command.
func WithoutUnshareFlag(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "unshare" {
			continue
		}
		out = append(out, a)
	}
	return out
}

// UnshareConfig tunes RunUnshared. The zero value is usable.
type UnshareConfig struct {
	// Exe is the executable to re-execute; /proc/self/exe if empty.
	Exe string
	// Signals, if not nil, replaces the process's own signals (tests).
	Signals <-chan os.Signal
	// Logger; zap.NewNop() if nil.
	Logger *zap.Logger
}

// RunUnshared re-executes this program with args (args[0] is its argv[0])
// in new user and mount namespaces and returns its exit code, 128+N if
// signal N killed it. args must not hold --unshare (see WithoutUnshareFlag).
//
// The ids mapped inside: if this process is root of its user namespace with
// CAP_SETUID and CAP_SETGID, every id it has is mapped to itself, so the
// child command may switch users (exim does); otherwise, as with
// `unshare -r`, only the caller's uid and gid are mapped, to 0, and
// setgroups is denied.
//
// SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded
// (SIGINT not when it came from the terminal, which sent it to the inner
// process already); cancelling ctx sends SIGTERM. If this process dies, the
// inner one gets SIGTERM.
func RunUnshared(ctx context.Context, args []string, cfg UnshareConfig) (int, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if len(args) == 0 {
		return 0, errors.New("launch: unshare: no arguments")
	}
	if Unshared() {
		return 0, errors.New("launch: unshare: already inside the namespaces made by --unshare")
	}
	cmd, err := unshareCommand(args, cfg.Exe, log)
	if err != nil {
		return 0, err
	}
	sigs := cfg.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, forwardedSignals...)
		defer signal.Stop(ch)
		sigs = ch
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("launch: unshare: start %s in new user and mount namespaces: %w", cmd.Path, unshareHint(err))
	}
	log.Debug("re-executed in new user and mount namespaces", zap.Int("pid", cmd.Process.Pid))
	return forwardUntilExit(ctx, cmd, sigs, log), nil
}

var forwardedSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

func unshareCommand(args []string, exe string, log *zap.Logger) (*exec.Cmd, error) {
	if exe == "" {
		exe = "/proc/self/exe"
	}
	uids, gids, setgroups, err := idMappings()
	if err != nil {
		return nil, err
	}
	log.Debug("user namespace mapping", zap.Any("uids", uids), zap.Any("gids", gids))
	cmd := exec.Command(exe, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	mntNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil, fmt.Errorf("launch: unshare: %w", err)
	}
	cmd.Env = append(ChildEnv(os.Environ()), UnshareEnv+"="+mntNS)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                uids,
		GidMappings:                gids,
		GidMappingsEnableSetgroups: setgroups,
		Pdeathsig:                  syscall.SIGTERM,
	}
	return cmd, nil
}

// forwardUntilExit forwards signals to cmd until it exits and returns its
// exit code.
func forwardUntilExit(ctx context.Context, cmd *exec.Cmd, sigs <-chan os.Signal, log *zap.Logger) int {
	waited := make(chan *os.ProcessState, 1)
	go func() {
		_ = cmd.Wait()
		waited <- cmd.ProcessState
	}()
	ctxDone := ctx.Done()
	for {
		select {
		case st := <-waited:
			return ExitCode(st)
		case sig := <-sigs:
			forwardSignal(cmd.Process, sig, log)
		case <-ctxDone:
			ctxDone = nil
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
}

// idMappings chooses the uid and gid maps of the new user namespace.
func idMappings() (uids, gids []syscall.SysProcIDMap, setgroups bool, err error) {
	if os.Geteuid() == 0 && hasSetIDCaps() {
		uids, err = identityMap("/proc/self/uid_map")
		if err == nil {
			gids, err = identityMap("/proc/self/gid_map")
		}
		if err != nil {
			return nil, nil, false, err
		}
		return uids, gids, setgroupsAllowed(), nil
	}
	uids = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
	gids = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	return uids, gids, false, nil
}

// identityMap maps every id of this user namespace, as listed by a
// /proc/self/{uid,gid}_map file, to itself.
func identityMap(path string) ([]syscall.SysProcIDMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("launch: unshare: %w", err)
	}
	defer f.Close()
	var m []syscall.SysProcIDMap
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue
		}
		inside, err1 := strconv.ParseUint(fs[0], 10, 32)
		size, err2 := strconv.ParseUint(fs[2], 10, 33)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("launch: unshare: bad line in %s: %q", path, sc.Text())
		}
		m = append(m, syscall.SysProcIDMap{ContainerID: int(inside), HostID: int(inside), Size: int(size)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("launch: unshare: read %s: %w", path, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("launch: unshare: %s maps no ids", path)
	}
	return m, nil
}

// hasSetIDCaps reports whether CAP_SETUID and CAP_SETGID are effective.
func hasSetIDCaps() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	const want = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID
	return data[0].Effective&want == want
}

// setgroupsAllowed reports whether this user namespace allows setgroups: a
// child namespace may allow it only then.
func setgroupsAllowed() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err != nil || strings.TrimSpace(string(b)) == "allow"
}

// unshareHint adds what usually stops CLONE_NEWUSER.
func unshareHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w (user namespaces may be disabled: sysctl user.max_user_namespaces, "+
			"kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns, "+
			"or a seccomp profile that blocks unshare/clone with CLONE_NEWUSER)", err)
	}
	return err
}

// EnterUnshared is the first thing the process re-executed by --unshare
// does: it makes every mount private, so that nothing mounted here
// propagates to the host and nothing the host mounts later propagates here
// (mount --make-rprivate /).
func EnterUnshared() error {
	// Making the host's mounts private would cut systemd's propagation:
	// refuse unless this is a new mount namespace.
	outer := os.Getenv(UnshareEnv)
	if mntNS, err := os.Readlink("/proc/self/ns/mnt"); err != nil || mntNS == outer {
		return fmt.Errorf("launch: unshare: %s=%q but this process is not in a new mount namespace (%s, %v)",
			UnshareEnv, outer, mntNS, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("launch: unshare: make mounts private: %w", err)
	}
	return nil
}
