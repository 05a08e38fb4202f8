package mountdev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// Params is what the mount(2) line of a volume needs (the rest of a
// mount's options are negotiated at INIT by whoever serves the device).
type Params struct {
	Volume     string // shown as the source, spoolfs:VOLUME (FSName)
	ReadOnly   bool   // MS_RDONLY / ro
	NoExec     bool   // MS_NOEXEC / noexec
	AllowOther bool   // allow_other: users other than the mounter may enter
}

// Method says how a volume was mounted, and so how to unmount it.
type Method string

const (
	MethodDirect     Method = "mount(2)"    // root or CAP_SYS_ADMIN: we called mount(2)
	MethodFusermount Method = "fusermount3" // the setuid helper mounted and passed us the fd
)

// FSName is the source shown in /proc/mounts for a volume.
func FSName(volume string) string { return "spoolfs:" + volume }

// Mount mounts a FUSE filesystem for p at dir and returns the open
// /dev/fuse file of the connection. It tries mount(2) itself first and,
// when that is not permitted, fusermount3 as libfuse does. Either way
// spoolfs holds the device descriptor (for kernel notifications).
func Mount(dir string, p Params) (*os.File, Method, error) {
	o := &p
	dev, direct := directMount(dir, o)
	if direct == nil {
		return dev, MethodDirect, nil
	}
	if errors.Is(direct, errHardFailure) {
		return nil, "", fmt.Errorf("cannot mount %s: %w", dir, direct)
	}
	dev, fm := fusermountMount(dir, o)
	if fm == nil {
		return dev, MethodFusermount, nil
	}
	return nil, "", fmt.Errorf("cannot mount %s: tried mount(2): %v; tried fusermount3: %v", dir, direct, fm)
}

// errHardFailure marks mount(2) errors that fusermount3 cannot fix either.
var errHardFailure = errors.New("mount(2) failed")

// directMount opens /dev/fuse and calls mount(2) (what fusermount3 does,
// without the setuid helper). A non-nil error wrapping errHardFailure
// means fusermount3 would not help.
func directMount(dir string, o *Params) (*os.File, error) {
	// syscall.Open, not os.OpenFile: the descriptor must stay in blocking
	// mode (the Go poller cannot wait on /dev/fuse).
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, errors.New("no /dev/fuse (is the fuse module loaded, or the device passed into the container?)")
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return nil, errors.New("/dev/fuse: permission denied")
	case err != nil:
		return nil, fmt.Errorf("opening /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,default_permissions",
		fd, os.Getuid(), os.Getgid())
	if o.AllowOther {
		data += ",allow_other"
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if o.NoExec {
		flags |= unix.MS_NOEXEC
	}
	err = unix.Mount(FSName(o.Volume), dir, "fuse.spoolfs", flags, data)
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, errors.New("operation not permitted (needs root or CAP_SYS_ADMIN)")
		}
		return nil, fmt.Errorf("%w: %w", errHardFailure, err)
	}
	return os.NewFile(uintptr(fd), "/dev/fuse"), nil
}

// fusermountPath finds the setuid helper of fuse3 (or of fuse 2).
func fusermountPath() (string, error) {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("not found in PATH (install fuse3)")
}

// fusermountMount runs `fusermount3 -o OPTS -- DIR` with one end of a
// socket pair as _FUSE_COMMFD=3 and receives the /dev/fuse descriptor it
// opened through SCM_RIGHTS, the way libfuse's fuse_mount_fusermount does.
func fusermountMount(dir string, o *Params) (*os.File, error) {
	path, err := fusermountPath()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	child := os.NewFile(uintptr(fds[0]), "fusermount-commfd")
	defer unix.Close(fds[1])

	cmd := exec.Command(path, "-o", fusermountOpts(o), "--", dir)
	cmd.Env = append(os.Environ(), "_FUSE_COMMFD=3")
	cmd.ExtraFiles = []*os.File{child} // becomes fd 3
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	child.Close() // so the receive below ends if the helper sent nothing
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, oneLine(stderr.String()))
	}
	fd, err := receiveFd(fds[1])
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/fuse"), nil
}

// fusermountOpts is the -o list for fusermount3 (it adds nosuid and nodev
// itself for users, and fd, rootmode, user_id and group_id).
func fusermountOpts(o *Params) string {
	opts := []string{"fsname=" + FSName(o.Volume), "subtype=spoolfs", "default_permissions", "nosuid", "nodev"}
	if o.AllowOther {
		opts = append(opts, "allow_other")
	}
	if o.ReadOnly {
		opts = append(opts, "ro")
	}
	if o.NoExec {
		opts = append(opts, "noexec")
	}
	return strings.Join(opts, ",")
}

// receiveFd reads one message carrying one descriptor from sock.
func receiveFd(sock int) (int, error) {
	buf := make([]byte, 8)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("receiving the /dev/fuse descriptor from fusermount3: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("fusermount3 sent no /dev/fuse descriptor (%d control messages, %v)", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("fusermount3 sent %d descriptors, want 1 (%v)", len(fds), err)
	}
	return fds[0], nil
}

// oneLine squeezes a tool's output into one line for an error message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "no output"
	}
	return s
}
