// Command loadgen is egressd's benchmark tool: the servers of the fake
// internet and the clients of the sandbox, run by bench/run.sh in the
// network namespaces it builds.
//
//	sandbox netns            firewall netns             internet netns
//	loadgen bulk|rate|  ──▶  (forward | egressd |  ──▶  loadgen server (TLS :443)
//	latency|idle             haproxy)                   loadgen dns    (UDP :53)
//
// Every client subcommand prints one JSON object (a Result) on stdout;
// `loadgen report` turns the collected lines into the markdown table.
package main

import (
	"fmt"
	"os"
)

// commands maps a subcommand to its entry point, which gets the remaining
// arguments and returns an error to print.
var commands = map[string]func(args []string) error{
	"server":  serverCmd,
	"dns":     dnsCmd,
	"bulk":    bulkCmd,
	"rate":    rateCmd,
	"latency": latencyCmd,
	"idle":    idleCmd,
	"report":  reportCmd,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: loadgen server|dns|bulk|rate|latency|idle|report [flags]")
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
