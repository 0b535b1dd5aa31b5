package main

import "fmt"

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// versionCmd is `egressd version`.
func versionCmd(args []string) int {
	fs := newFlags("version", "", "Print egressd's version.")
	if pos, code, ok := parseArgs(fs, args); !ok {
		return code
	} else if len(pos) != 0 {
		return usageError(fs, "unexpected argument "+pos[0])
	}
	fmt.Println("egressd " + version)
	return 0
}
