// A Go gRPC server and client over TLS for sonde's Go crypto/tls probes
// (tests/bpf_protocols_go.rs). Debian's golang-google-grpc-dev in GOPATH
// mode, built offline; the service is gRPC's own health service (its
// generated code ships with the package, so no protoc is needed).
//
//	gogrpc server            serves gRPC over TLS on 127.0.0.1:0, prints "listening PORT",
//	                         and on stdin EOF prints "served METHOD CODE COUNT" lines
//	gogrpc client PORT N     N unary Check calls for a known service, N for an unknown one
//	                         (NOT_FOUND), N server-streaming Watch calls of 3 messages each,
//	                         on one connection; prints "done METHOD CODE COUNT" lines
//
// Every handler recurses deeply first, so the goroutine's stack grows and
// moves while the server's (*tls.Conn) calls are probed.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// The service Check and Watch know; any other is NOT_FOUND.
const knownService = "sonde.test"

// Messages a Watch stream sends before it ends.
const watchMessages = 3

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gogrpc server | client PORT N")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		server()
	case "client":
		client(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}

// deep recurses n frames of about 1 KiB each: far beyond the 8 KiB a
// goroutine starts with, so its stack is copied to bigger ones.
//
//go:noinline
func deep(n int) int {
	var pad [128]int64
	pad[n%128] = int64(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%128]&1)
}

// counts is what one side did: "METHOD CODE" → calls.
type counts struct {
	mu sync.Mutex
	by map[string]int
}

func (c *counts) add(method string, code codes.Code) {
	c.mu.Lock()
	c.by[fmt.Sprintf("%s %d", method, int(code))]++
	c.mu.Unlock()
}

func (c *counts) print(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.by))
	for k := range c.by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s %s %d\n", prefix, k, c.by[k])
	}
}

type health struct {
	healthpb.UnimplementedHealthServer
	served *counts
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	deep(3000)
	if req.Service != knownService {
		h.served.add("Check", codes.NotFound)
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	h.served.add("Check", codes.OK)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *health) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	deep(3000)
	for i := 0; i < watchMessages; i++ {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
			return err
		}
	}
	h.served.add("Watch", codes.OK)
	return nil
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	tmpl := x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	check(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func server() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned()}})
	srv := grpc.NewServer(grpc.Creds(creds))
	served := &counts{by: map[string]int{}}
	healthpb.RegisterHealthServer(srv, &health{served: served})
	go srv.Serve(listener)
	fmt.Printf("listening %d\n", listener.Addr().(*net.TCPAddr).Port)
	// Until stdin closes, then the counts.
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	srv.GracefulStop()
	served.print("served")
}

func client(args []string) {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gogrpc client PORT N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(args[1])
	check(err)
	creds := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	conn, err := grpc.Dial("127.0.0.1:"+args[0], grpc.WithTransportCredentials(creds), grpc.WithBlock())
	check(err)
	defer conn.Close()
	stub := healthpb.NewHealthClient(conn)
	done := &counts{by: map[string]int{}}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		_, err := stub.Check(ctx, &healthpb.HealthCheckRequest{Service: knownService})
		done.add("Check", status.Code(err))
		_, err = stub.Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
		done.add("Check", status.Code(err))
		stream, err := stub.Watch(ctx, &healthpb.HealthCheckRequest{Service: knownService})
		check(err)
		received := 0
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			check(err)
			received++
		}
		if received != watchMessages {
			fmt.Fprintf(os.Stderr, "watch: %d messages\n", received)
			os.Exit(1)
		}
		done.add("Watch", codes.OK)
	}
	done.print("done")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
