// keyward-conformance-go sends Envoy ext_authz CheckRequests built with
// go-control-plane's generated types (the ones Envoy's Go ecosystem uses) to a
// keyward authz server, and prints what came back, one JSON object per line.
//
// Input on stdin, one JSON object per line:
//
//	{"name":"ok","method":"GET","host":"a.example","path":"/v1/x?api_key=..","headers":{"x-api-key":".."},"source":"10.0.0.1"}
//
// Output on stdout, one JSON object per line, in the same order.
//
// Flags: -addr host:port; -cacert FILE connects over TLS and verifies keyward's
// certificate against FILE; -cert and -key add a client certificate (mTLS).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

type input struct {
	Name    string            `json:"name"`
	Method  string            `json:"method"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Source  string            `json:"source"`
}

type output struct {
	Name                string            `json:"name"`
	GrpcError           string            `json:"grpcError,omitempty"`
	Code                int32             `json:"code"`
	HTTPStatus          int32             `json:"httpStatus,omitempty"`
	Body                string            `json:"body,omitempty"`
	Headers             map[string]string `json:"headers"`
	HeadersToRemove     []string          `json:"headersToRemove"`
	QueryParamsToRemove []string          `json:"queryParamsToRemove"`
	DynamicMetadata     json.RawMessage   `json:"dynamicMetadata,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "keyward authz gRPC address")
	cacert := flag.String("cacert", "", "PEM CA bundle: connect over TLS and verify keyward's certificate against it")
	cert := flag.String("cert", "", "with -cacert: PEM client certificate to present (mTLS)")
	key := flag.String("key", "", "PEM private key of -cert")
	flag.Parse()
	creds, err := transportCredentials(*cacert, *cert, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c input
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := out.Encode(check(client, c)); err != nil {
			os.Exit(2)
		}
	}
}

// transportCredentials is cleartext without a CA, TLS 1.2+ verifying the server against the CA
// otherwise, presenting a client certificate when one is given.
func transportCredentials(cacert, cert, key string) (credentials.TransportCredentials, error) {
	if cacert == "" {
		return insecure.NewCredentials(), nil
	}
	pemData, err := os.ReadFile(cacert)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s: no PEM certificate", cacert)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

func check(client authv3.AuthorizationClient, c input) output {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: c.Source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "conformance-" + c.Name, Method: c.Method, Host: c.Host, Path: c.Path, Headers: c.Headers, Protocol: "HTTP/1.1", Scheme: "http",
		}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.Check(ctx, req)
	o := output{Name: c.Name, Headers: map[string]string{}, HeadersToRemove: []string{}, QueryParamsToRemove: []string{}}
	if err != nil {
		o.GrpcError = err.Error()
		return o
	}
	o.Code = res.GetStatus().GetCode()
	if res.GetDynamicMetadata() != nil {
		o.DynamicMetadata, _ = protojson.Marshal(res.GetDynamicMetadata())
	}
	if d := res.GetDeniedResponse(); d != nil {
		o.HTTPStatus = int32(d.GetStatus().GetCode())
		o.Body = d.GetBody()
		for _, h := range d.GetHeaders() {
			o.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	}
	if ok := res.GetOkResponse(); ok != nil {
		for _, h := range ok.GetHeaders() {
			o.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		o.HeadersToRemove = append(o.HeadersToRemove, ok.GetHeadersToRemove()...)
		o.QueryParamsToRemove = append(o.QueryParamsToRemove, ok.GetQueryParametersToRemove()...)
	}
	return o
}
