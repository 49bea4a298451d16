// A Go HTTPS server and client for sonde's Go crypto/tls probes
// (tests/bpf_protocols_go.rs). Standard library only, built offline.
//
//	gotls server CERTDIR          serves HTTPS on 127.0.0.1:0, prints "listening PORT",
//	                              and on stdin EOF prints "served PATH COUNT" lines
//	gotls client PORT N PATH...   N keep-alive requests per path, prints "done PATH COUNT"
//	gotls load PORT RPS SECONDS CONNS
//	                              GET / at RPS requests/s over CONNS keep-alive connections
//	                              for SECONDS, prints "requests COUNT" (the benchmark's client)
//
// /deep recurses deeply in the handler (the goroutine's stack grows and
// moves many times); /deepconn serves on connections whose Read recurses
// first, so the stack moves inside (*tls.Conn).Read itself.
package main

import (
	"bufio"
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
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gotls server | client PORT N PATH...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	case "load":
		load(os.Args[2:])
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

// deepConn is a TCP connection (the same layout: tls.Conn finds its
// socket through it) whose Read first grows the stack.
type deepConn struct{ net.TCPConn }

func (c *deepConn) Read(b []byte) (int, error) {
	deep(2000)
	return c.TCPConn.Read(b)
}

type deepListener struct{ net.Listener }

func (l deepListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &deepConn{*c.(*net.TCPConn)}, nil
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

func server(args []string) {
	var mu sync.Mutex
	served := map[string]int{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deep" || r.URL.Path == "/deepconn" {
			deep(4000)
		}
		mu.Lock()
		served[r.URL.Path]++
		mu.Unlock()
		io.WriteString(w, "hello from go\n")
	})
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned()}, NextProtos: []string{"http/1.1"}}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	deepPlain, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	for _, l := range []net.Listener{tls.NewListener(plain, cfg), tls.NewListener(deepListener{deepPlain}, cfg)} {
		srv := &http.Server{Handler: handler, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		go srv.Serve(l)
	}
	fmt.Printf("listening %d %d\n", plain.Addr().(*net.TCPAddr).Port, deepPlain.Addr().(*net.TCPAddr).Port)
	// Until stdin closes, then the counts.
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	mu.Lock()
	paths := make([]string, 0, len(served))
	for p := range served {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Printf("served %s %d\n", p, served[p])
	}
	mu.Unlock()
}

func client(args []string) {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: gotls client PORT N PATH...")
		os.Exit(2)
	}
	port := args[0]
	n, err := strconv.Atoi(args[1])
	check(err)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: false,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	c := &http.Client{Transport: tr}
	for _, path := range args[2:] {
		done := 0
		for i := 0; i < n; i++ {
			resp, err := c.Get("https://127.0.0.1:" + port + path)
			check(err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				done++
			}
		}
		fmt.Printf("done %s %d\n", path, done)
	}
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 1,
	}}
}

func load(args []string) {
	if len(args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gotls load PORT RPS SECONDS CONNS")
		os.Exit(2)
	}
	rps, err := strconv.ParseFloat(args[1], 64)
	check(err)
	seconds, err := strconv.Atoi(args[2])
	check(err)
	conns, err := strconv.Atoi(args[3])
	check(err)
	url := "https://127.0.0.1:" + args[0] + "/"
	interval := time.Duration(float64(time.Second) * float64(conns) / rps)
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var mu sync.Mutex
	var wg sync.WaitGroup
	total := 0
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			done := 0
			for now := range tick.C {
				if now.After(deadline) {
					break
				}
				resp, err := c.Get(url)
				check(err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					done++
				}
			}
			mu.Lock()
			total += done
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("requests %d\n", total)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
