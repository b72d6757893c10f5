// keyward-bench-go-null is the Go floor of the check-path benchmark: an Envoy
// ext_authz server on grpc-go and go-control-plane's generated types that
// decodes each CheckRequest and answers OK, doing nothing else. Set beside the
// null grpc-js server, it separates what Node.js costs from what the load
// generator and this machine cost.
//
//	keyward-bench-go-null -addr 127.0.0.1:0
//
// It speaks the bench servers' protocol (bench/servers/server.ts): "READY <port>"
// on stdout once listening; for each "stats" line on stdin, one line
// "STATS {json}" with the checks answered and the resident memory.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type server struct {
	authv3.UnimplementedAuthorizationServer
	n atomic.Int64
}

var ok = &authv3.CheckResponse{Status: &status.Status{Code: 0}}

func (s *server) Check(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.n.Add(1)
	return ok, nil
}

// rss is the resident set size from /proc/self/statm (Linux), 0 elsewhere.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	g := grpc.NewServer()
	s := &server{}
	authv3.RegisterAuthorizationServer(g, s)
	fmt.Printf("READY %d\n", lis.Addr().(*net.TCPAddr).Port)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if strings.TrimSpace(in.Text()) != "stats" {
				continue
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			out, _ := json.Marshal(map[string]any{
				"decisions":     map[string]int64{"null": s.n.Load()},
				"rssBytes":      rss(),
				"heapUsedBytes": m.HeapAlloc,
				"indexKeys":     0,
			})
			fmt.Printf("STATS %s\n", out)
		}
	}()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		g.Stop()
	}()
	if err := g.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
