// keyward-bench-go-load is the check path's saturating load generator: Envoy ext_authz Check
// calls on grpc-go, in a closed loop or at a fixed rate, the requests built with
// go-control-plane's generated types. -cpuprofile FILE writes a CPU profile of the timed calls.
// Every request is decoded and encoded once, before the clock starts; the calls then send those
// bytes as they are (a pass-through codec), so a call costs the client only grpc-go's own work.
//
//	keyward-bench-go-load -addr 127.0.0.1:PORT -requests FILE [-seconds 6] [-concurrency 64] [-connections 4] [-rps 0]
//
// FILE is a JSON array of {"request": CheckRequest in protobuf JSON, "expect": code}: the
// google.rpc code the answer's status must carry (0 allowed, 16 unknown key, 7 scope missing).
// Call n sends request n mod len (shared round-robin, as ghz does). With -rps, calls start at
// that rate (a call waits for a free worker when all are busy, and the schedule catches up
// after); without, each worker starts its next call when its last one is answered (a closed
// loop). Latency is from a call's start to its answer. Calls in flight when the
// time is up are waited for and counted; none is cancelled. On exit, one JSON object on stdout:
// the calls completed, their answers' codes, the answers whose code differs from the request's
// expected one, the calls that failed (gRPC status not OK, by message), latency percentiles of
// the completed calls, and the client's own CPU seconds (user + system).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const method = "/envoy.service.auth.v3.Authorization/Check"

// rawCodec sends a *[]byte as the message's bytes and receives the answer's bytes into one.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b := (*v.(*[]byte))[:0]
	for _, buf := range data {
		b = append(b, buf.ReadOnlyData()...)
	}
	*v.(*[]byte) = b
	return nil
}

func (rawCodec) Name() string { return "proto" }

type entry struct {
	Request json.RawMessage `json:"request"`
	Expect  int32           `json:"expect"`
}

// statusCode reads CheckResponse.status.code (fields 1 and 1) from an encoded answer without
// decoding the rest; an absent status or code is 0, as protobuf's defaults say.
func statusCode(b []byte) (int32, error) {
	st, err := field(b, 1, protowire.BytesType)
	if err != nil || st == nil {
		return 0, err
	}
	code, err := field(st, 1, protowire.VarintType)
	if err != nil || code == nil {
		return 0, err
	}
	v, n := protowire.ConsumeVarint(code)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	return int32(v), nil
}

// field returns the last occurrence of field num of type typ in b (its payload for bytes, its
// encoded varint otherwise), or nil.
func field(b []byte, num protowire.Number, typ protowire.Type) ([]byte, error) {
	var found []byte
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, protowire.ParseError(l)
		}
		b = b[l:]
		vl := protowire.ConsumeFieldValue(n, t, b)
		if vl < 0 {
			return nil, protowire.ParseError(vl)
		}
		if n == num && t == typ {
			if t == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(b)
				found = v
			} else {
				found = b[:vl]
			}
		}
		b = b[vl:]
	}
	return found, nil
}

type worker struct {
	lat        []int64
	codes      map[int32]int64
	unexpected int64
	errors     map[string]int64
}

type report struct {
	Seconds     float64          `json:"seconds"`
	Count       int64            `json:"count"`
	Rps         float64          `json:"rps"`
	Codes       map[string]int64 `json:"codes"`
	Unexpected  int64            `json:"unexpected"`
	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"errorKinds"`
	P50Ms       float64          `json:"p50Ms"`
	P99Ms       float64          `json:"p99Ms"`
	P999Ms      float64          `json:"p999Ms"`
	MaxMs       float64          `json:"maxMs"`
	CPUSeconds  float64          `json:"cpuSeconds"`
	Concurrency int              `json:"concurrency"`
	Connections int              `json:"connections"`
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func pct(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	i = max(0, min(len(sorted)-1, i))
	return float64(sorted[i]) / 1e6
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "keyward-bench-go-load:", err)
	os.Exit(2)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "keyward authz gRPC address")
	file := flag.String("requests", "", "JSON array of {request, expect}")
	seconds := flag.Float64("seconds", 6, "how long new calls are started")
	concurrency := flag.Int("concurrency", 64, "calls in flight")
	connections := flag.Int("connections", 4, "HTTP/2 connections the calls share")
	rps := flag.Float64("rps", 0, "calls started per second; 0: a closed loop")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the timed calls to this file")
	flag.Parse()

	raw, err := os.ReadFile(*file)
	if err != nil {
		fail(err)
	}
	var entries []entry
	if err := json.Unmarshal(raw, &entries); err != nil {
		fail(fmt.Errorf("%s: %w", *file, err))
	}
	if len(entries) == 0 {
		fail(fmt.Errorf("%s: no requests", *file))
	}
	encoded := make([][]byte, len(entries))
	expect := make([]int32, len(entries))
	for i, e := range entries {
		var req authv3.CheckRequest
		if err := protojson.Unmarshal(e.Request, &req); err != nil {
			fail(fmt.Errorf("request %d: %w", i, err))
		}
		if encoded[i], err = proto.Marshal(&req); err != nil {
			fail(fmt.Errorf("request %d: %w", i, err))
		}
		expect[i] = e.Expect
	}

	conns := make([]*grpc.ClientConn, *connections)
	for i := range conns {
		c, err := grpc.NewClient(*addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})),
			// Fixed, large flow-control windows: no BDP pings and few WINDOW_UPDATEs to send.
			grpc.WithInitialWindowSize(1<<24),
			grpc.WithInitialConnWindowSize(1<<26),
			grpc.WithSharedWriteBuffer(true),
			// No replay buffer per call: a failed call is counted, never retried.
			grpc.WithDisableRetry(),
		)
		if err != nil {
			fail(err)
		}
		defer c.Close()
		conns[i] = c
		// Each connection is up before the clock starts.
		var out []byte
		if err := c.Invoke(context.Background(), method, &encoded[0], &out); err != nil {
			fail(fmt.Errorf("connection %d: %w", i, err))
		}
	}

	var next atomic.Uint64
	workers := make([]*worker, *concurrency)
	var wg sync.WaitGroup
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	stop := start.Add(time.Duration(*seconds * float64(time.Second)))
	// With a rate, a pacer hands out one token per call when its time has come.
	var tokens chan struct{}
	if *rps > 0 {
		tokens = make(chan struct{}, *concurrency)
		go func() {
			defer close(tokens)
			for n := 0; ; n++ {
				due := start.Add(time.Duration(float64(n) / *rps * float64(time.Second)))
				if !due.Before(stop) {
					return
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				tokens <- struct{}{}
			}
		}()
	}
	for w := range workers {
		wk := &worker{lat: make([]int64, 0, 1<<15), codes: map[int32]int64{}, errors: map[string]int64{}}
		workers[w] = wk
		conn := conns[w%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			out := make([]byte, 0, 512)
			for {
				if tokens != nil {
					if _, open := <-tokens; !open {
						return
					}
				}
				t0 := time.Now()
				if !t0.Before(stop) {
					return
				}
				i := (next.Add(1) - 1) % uint64(len(encoded))
				err := conn.Invoke(ctx, method, &encoded[i], &out)
				d := time.Since(t0)
				if err != nil {
					wk.errors[status.Convert(err).Message()]++
					continue
				}
				wk.lat = append(wk.lat, d.Nanoseconds())
				code, err := statusCode(out)
				if err != nil {
					wk.errors["undecodable answer: "+err.Error()]++
					continue
				}
				wk.codes[code]++
				if code != expect[i] {
					wk.unexpected++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0

	r := report{Seconds: elapsed, Codes: map[string]int64{}, ErrorKinds: map[string]int64{}, CPUSeconds: cpu, Concurrency: *concurrency, Connections: *connections}
	var lat []int64
	for _, wk := range workers {
		lat = append(lat, wk.lat...)
		for c, n := range wk.codes {
			r.Codes[strconv.Itoa(int(c))] += n
		}
		for m, n := range wk.errors {
			r.ErrorKinds[m] += n
			r.Errors += n
		}
		r.Unexpected += wk.unexpected
	}
	slices.Sort(lat)
	r.Count = int64(len(lat))
	r.Rps = float64(r.Count) / elapsed
	r.P50Ms, r.P99Ms, r.P999Ms = pct(lat, 50), pct(lat, 99), pct(lat, 99.9)
	if len(lat) > 0 {
		r.MaxMs = float64(lat[len(lat)-1]) / 1e6
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fail(err)
	}
	pprof.StopCPUProfile()
}
