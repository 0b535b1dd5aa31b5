// Command egressd is an egress firewall for sandboxes: kernel rules divert
// a sandbox's TCP connections and DNS queries to egressd, which reads the
// name each flow asks for, judges it against the sandbox's policy and
// forwards only what is allowed.
//
// main.go only parses the command line and dispatches; each subcommand
// lives in its own file as a func(args []string) int returning the exit
// status.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// command is one subcommand: egressd NAME ARGS...
type command struct {
	name    string
	summary string
	run     func(args []string) int
}

// commands in the order help lists them. Adding one is adding a line.
var commands = []command{
	{"validate", "check a config file and report every problem in it", validateCmd},
	{"check", "say whether a sandbox may reach a host or address, and why", checkCmd},
	{"run", "install the kernel rules and serve the proxy", runCmd},
	{"rules", "print the kernel ruleset run would install", rulesCmd},
	{"cleanup", "remove every kernel rule and route egressd installed", cleanupCmd},
	{"policy", "show or change a running egressd's sandbox policies (admin API)", policyCmd},
	{"sandbox", "create, remove and list a running egressd's sandboxes (admin API)", sandboxCmd},
	{"events", "follow a running egressd's decisions as they happen (admin API)", eventsCmd},
	{"suggest", "print the smallest policy that allows what a sandbox did", suggestCmd},
	{"version", "print egressd's version", versionCmd},
}

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

// dispatch runs the subcommand named by args[0] and returns its exit status.
func dispatch(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	switch args[0] {
	case "help":
		return help(args[1:])
	case "-h", "-help", "--help":
		usage(os.Stderr)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "egressd: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return 2
}

// help is `egressd help [COMMAND]`.
func help(args []string) int {
	if len(args) == 0 {
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run([]string{"-h"})
		}
	}
	fmt.Fprintf(os.Stderr, "egressd: unknown command %q\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, "egressd is an egress firewall for sandboxes.\n\nUsage: egressd COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "help", "show this list, or a command's flags: egressd help COMMAND")
}

// newFlags returns a flag set for subcommand name whose usage message
// shows synopsis (the arguments after the command name) and about.
func newFlags(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: egressd %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags wherever they are among args (the flag package
// stops at the first positional argument) and returns the positional
// ones; after "--" everything is positional. The int is the exit status
// to return when parsing did not succeed: 0 for -h, 2 for a usage error;
// the flag package has already printed the message.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		if err != nil {
			return nil, 2, false
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// usageError prints msg and fs's usage to stderr and returns exit status 2.
func usageError(fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(os.Stderr, "egressd %s: %s\n", fs.Name(), msg)
	fs.Usage()
	return 2
}
