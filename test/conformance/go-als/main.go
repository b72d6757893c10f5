// keyward-als-go streams Envoy HTTP access log entries, built with
// go-control-plane's generated types (the ones Envoy's Go ecosystem uses), to
// keyward's Access Log Service receiver (envoy.service.accesslog.v3), exactly
// as Envoy's envoy.access_loggers.http_grpc logger does: one client stream,
// an identifier in the first message, entries in batches.
//
// Input on stdin, one JSON object per line; "metadata" is the ext_authz
// CheckResponse.dynamic_metadata (a google.protobuf.Struct in protojson), which
// Envoy files under the ext_authz filter's name:
//
//	{"metadata":{"key_id":"kw_..","apikey":"shop/acme"},"status":200,"upstreamMs":12,"method":"GET","authority":"a.example","path":"/v1/x"}
//
// "unauthorized":true marks the entry as Envoy does when the external authorizer
// denied the request and Envoy answered it itself (response flag UAEX).
//
// Output on stdout: {"sent":N,"messages":M} once the server closed the stream.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type input struct {
	Metadata   json.RawMessage `json:"metadata"`
	Namespace  string          `json:"namespace"`
	Status     uint32          `json:"status"`
	UpstreamMs int64           `json:"upstreamMs"`
	Method     string          `json:"method"`
	Authority  string          `json:"authority"`
	Path       string          `json:"path"`
	// Unauthorized: denied by the external authorizer (UAEX).
	Unauthorized bool `json:"unauthorized"`
}

func entry(in input) (*datav3.HTTPAccessLogEntry, error) {
	common := &datav3.AccessLogCommon{
		StartTime:                  timestamppb.New(time.Now()),
		TimeToLastUpstreamRxByte:   durationpb.New(time.Duration(in.UpstreamMs) * time.Millisecond),
		TimeToLastDownstreamTxByte: durationpb.New(time.Duration(in.UpstreamMs+1) * time.Millisecond),
		DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000},
		}}},
	}
	if in.Unauthorized {
		common.ResponseFlags = &datav3.ResponseFlags{UnauthorizedDetails: &datav3.ResponseFlags_Unauthorized{Reason: datav3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}}
		common.TimeToLastUpstreamRxByte = nil
	}
	if len(in.Metadata) > 0 {
		s := &structpb.Struct{}
		if err := protojson.Unmarshal(in.Metadata, s); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
		ns := in.Namespace
		if ns == "" {
			ns = "envoy.filters.http.ext_authz"
		}
		common.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{ns: s}}
	}
	method := corev3.RequestMethod_GET
	if m, ok := corev3.RequestMethod_value[in.Method]; ok {
		method = corev3.RequestMethod(m)
	}
	return &datav3.HTTPAccessLogEntry{
		CommonProperties: common,
		ProtocolVersion:  datav3.HTTPAccessLogEntry_HTTP11,
		Request:          &datav3.HTTPRequestProperties{RequestMethod: method, Authority: in.Authority, Path: in.Path},
		Response:         &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(in.Status)},
	}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9003", "keyward access log service address")
	batch := flag.Int("batch", 2, "entries per StreamAccessLogsMessage")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline for the whole stream")
	flag.Parse()

	var entries []*datav3.HTTPAccessLogEntry
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var in input
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			fail(fmt.Errorf("input: %w", err))
		}
		e, err := entry(in)
		if err != nil {
			fail(err)
		}
		entries = append(entries, e)
	}

	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	stream, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		fail(err)
	}
	messages := 0
	for i := 0; i < len(entries); i += *batch {
		end := min(i+*batch, len(entries))
		msg := &alsv3.StreamAccessLogsMessage{
			LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries[i:end]}},
		}
		if i == 0 {
			msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "keyward-als-go", Cluster: "conformance"}, LogName: "keyward"}
		}
		if err := stream.Send(msg); err != nil {
			fail(err)
		}
		messages++
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]int{"sent": len(entries), "messages": messages})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "keyward-als-go:", err)
	os.Exit(1)
}
