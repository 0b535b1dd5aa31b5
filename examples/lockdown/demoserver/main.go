// Command demoserver is the fake internet of the lock-down example
// (examples/lockdown/lockdown.sh): HTTPS, HTTP, a TCP sink, a UDP sink and
// a DNS server, each printing one line for everything it receives, so the
// script can show what got out of the sandbox. It is a demo, not a server
// to run anywhere real.
//
//	demoserver serve -ca CA.pem -zone NAME=ADDR[,ADDR] ... -dns IP:53
//	demoserver tick -addr IP:PORT -every 200ms
//
// tick is the sandbox side of the "live connection" step: it opens one TCP
// connection and writes a numbered line on it until the connection breaks.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demoserver serve|tick [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serveCmd(os.Args[2:])
	case "tick":
		err = tickCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoserver:", err)
		os.Exit(1)
	}
}
