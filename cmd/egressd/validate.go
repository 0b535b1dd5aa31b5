package main

import (
	"fmt"
	"os"

	"github.com/egressd/egressd/internal/config"
)

// validateCmd is `egressd validate -config F`: exit 0 and print
// "F: ok (N sandboxes)" for a valid file; print every problem to stderr
// and exit 1 for an invalid or unreadable one.
func validateCmd(args []string) int {
	fs := newFlags("validate", "-config FILE",
		"Check a config file without starting anything; print every problem found,\none per line, with its file and line.")
	path := fs.String("config", "", "config file (required)")
	pos, code, ok := parseArgs(fs, args)
	switch {
	case !ok:
		return code
	case len(pos) != 0:
		return usageError(fs, "unexpected argument "+pos[0])
	case *path == "":
		return usageError(fs, "-config is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", *path, w)
	}
	n := len(cfg.Sandboxes.All())
	noun := "sandboxes"
	if n == 1 {
		noun = "sandbox"
	}
	fmt.Printf("%s: ok (%d %s)\n", *path, n, noun)
	return 0
}
