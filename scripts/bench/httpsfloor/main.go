// Command httpsfloor is the floor under a hub PATCH, as a process: an HTTPS
// server (net/http, TLS 1.3, HTTP/1.1 kept alive, a self-signed certificate)
// whose handler reads the body, makes it one durable Put in a file store
// (twins/bench/MODULE, MODULE the last element of the request's path) and
// answers 600 bytes of JSON, as BenchmarkBareHTTPSPut's in-process server.
// It runs with the Ps `hub serve` gives itself (store.UseProcs) and prints
// "listening ADDR" on stderr. scripts/bench/hubfloor.sh drives it with wrk
// beside the hub.
//
//	go run ./scripts/bench/httpsfloor -data DIR [-no-store]
package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/internal/store"
)

func main() {
	dir := flag.String("data", "", "the store's directory")
	noStore := flag.Bool("no-store", false, "answer without writing: HTTPS alone")
	flag.Parse()
	if *dir == "" && !*noStore {
		log.Fatal("httpsfloor: -data DIR is required (or -no-store)")
	}
	defer store.UseProcs()()
	var st *store.FileStore
	if !*noStore {
		var err error
		if st, err = store.Open(*dir); err != nil {
			log.Fatal(err)
		}
		defer st.Close()
	}
	answer := []byte(`{"deviceId":"bench","moduleId":"m0","etag":"AAAAAAAAAAE=","version":2,"properties":{"desired":{"n":1,"interval":5,"$metadata":{"$lastUpdated":"2026-12-03T10:00:00.0000000Z"},"$version":2},"reported":{"$metadata":{"$lastUpdated":"2026-12-03T10:00:00.0000000Z"},"$version":1}}}`)
	answer = append(answer, bytes.Repeat([]byte(" "), max(0, 600-len(answer)))...)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil && st != nil {
			_, err = st.Put("twins/bench/"+r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:], body, store.Any)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		w.Write(answer)
	}))
	srv.EnableHTTP2 = false
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // wrk's connections cut at its end
	srv.Listener.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv.Listener = l
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	fmt.Fprintln(os.Stderr, "listening", l.Addr())
	select {}
}
