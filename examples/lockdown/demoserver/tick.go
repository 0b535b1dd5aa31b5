package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"time"
)

// tickCmd writes "tick N" lines on one TCP connection every interval until
// the connection breaks, printing what happens to each.
func tickCmd(args []string) error {
	fs := flag.NewFlagSet("tick", flag.ContinueOnError)
	addr := fs.String("addr", "", "where to connect (required)")
	every := fs.Duration("every", 200*time.Millisecond, "interval between lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", *addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(c, "tick %d\n", i); err != nil {
			fmt.Printf("tick %d: write: %v\n", i, err)
			return nil
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := br.ReadString('\n'); err != nil {
			fmt.Printf("tick %d: connection ended: %v\n", i, err)
			return nil
		}
		time.Sleep(*every)
	}
}
