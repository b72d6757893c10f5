// keyward-h2spec runs h2spec's HTTP/2 conformance cases (github.com/summerwind/h2spec)
// against keyward's gRPC port, cleartext with prior knowledge. A thin front to
// h2spec.Run so that go.mod and go.sum pin h2spec's dependencies; the test
// (test/integration/h2-conformance.test.ts) reads the JUnit report it writes.
//
//	keyward-h2spec -port 9001 -path /envoy.service.auth.v3.Authorization/Check -junit out.xml [section ...]
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/summerwind/h2spec"
	"github.com/summerwind/h2spec/config"
)

func main() {
	host := flag.String("host", "127.0.0.1", "server host")
	port := flag.Int("port", 0, "server port")
	path := flag.String("path", "/", "request path")
	junit := flag.String("junit", "", "write a JUnit report here")
	timeout := flag.Duration("timeout", 2*time.Second, "how long one case waits for the server")
	strict := flag.Bool("strict", false, "also run h2spec's strict cases")
	flag.Parse()
	if *port == 0 {
		fmt.Fprintln(os.Stderr, "keyward-h2spec: -port is required")
		os.Exit(2)
	}
	ok, err := h2spec.Run(&config.Config{
		Host:         *host,
		Port:         *port,
		Path:         *path,
		Timeout:      *timeout,
		MaxHeaderLen: 4000,
		JUnitReport:  *junit,
		Strict:       *strict,
		Sections:     flag.Args(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyward-h2spec:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
