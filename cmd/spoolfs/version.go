package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version overrides the module version when set at build time:
// go build -ldflags "-X main.version=v1.2.3". Empty: the module version
// the go command stamped (a tag, or a pseudo-version from the commit).
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of spoolfs and the commit it was built from",
		Long: `Print the module version, the VCS commit (+dirty when the tree had
uncommitted changes) and the Go toolchain, on one line; the same as
spoolfs --version. A binary built with -buildvcs=false says so instead of a
commit.`,
		Args: cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprintln(c.OutOrStdout(), versionLine())
		},
	}
}

// versionLine is what `spoolfs version` and `spoolfs --version` print.
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		info = &debug.BuildInfo{}
	}
	return formatVersion(info, version, runtime.GOOS+"/"+runtime.GOARCH)
}

// formatVersion renders info: "spoolfs VERSION (commit C[+dirty],
// built TIME, GO OS/ARCH)". override, when set, replaces the module
// version.
func formatVersion(info *debug.BuildInfo, override, platform string) string {
	v := info.Main.Version
	if override != "" {
		v = override
	}
	if v == "" {
		v = "(devel)"
	}
	var rev, at, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	commit := "commit unknown: built without VCS information (-buildvcs=false?)"
	if rev != "" {
		commit = "commit " + rev + dirty
		if at != "" {
			commit += " of " + at
		}
	}
	goVersion := info.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return fmt.Sprintf("spoolfs %s (%s, %s %s)", v, commit, goVersion, platform)
}
