// Command nsnet-bgp is one host's BGP speaker. nsnet's agent starts it,
// inside the host's namespace, for each host that `nsnet bgp set` made a
// speaker; it exits by itself when `nsnet bgp off` turns the host's BGP
// off. It is a program of its own, installed beside nsnet, so that gobgp's
// gRPC and protobuf do not slow every nsnet command's start.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/nsnet/nsnet/internal/bgp/speaker"
)

func main() {
	stateDir := flag.String("state-dir", "", "nsnet's state directory")
	host := flag.String("host", "", "the host namespace's file (empty: the one it runs in)")
	flag.Parse()
	if *stateDir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: nsnet-bgp --state-dir DIR [--host NETNS-FILE] (started by nsnet's agent)")
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := speaker.Run(*stateDir, *host); err != nil {
		log.Printf("bgp speaker: %v", err)
		os.Exit(1)
	}
}
