// Command spoolfs mounts, serves and replicates spoolfs volumes.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "spoolfs: not built yet")
	os.Exit(2)
}
