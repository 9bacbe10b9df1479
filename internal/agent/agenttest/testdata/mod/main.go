// Command mod is the module the agent's tests run:
//
//	mod run       print the IOTEDGE_* and OUTPOST_* environment, "ready", then
//	              "tick N" every 50 ms until SIGTERM; print "got SIGTERM" and exit 0
//	mod exit N    exit with code N at once
//	mod live D N  run for the duration D, then exit with code N
//	mod sign DATA print "digest <base64>" signed for DATA through the workload
//	              API at $IOTEDGE_WORKLOADURI (primary key), then "ready", and
//	              run as run does
//	mod healthy-until MS  exit 0 before the Unix time MS (milliseconds), else
//	              print "unhealthy since MS" and exit 1: a health check
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "mod: run or exit N")
		os.Exit(100)
	}
	switch os.Args[1] {
	case "exit":
		n := 0
		if len(os.Args) > 2 {
			n, _ = strconv.Atoi(os.Args[2])
		}
		fmt.Println("exiting with", n)
		os.Exit(n)
	case "healthy-until":
		ms, _ := strconv.ParseInt(os.Args[2], 10, 64)
		if time.Now().UnixMilli() < ms {
			os.Exit(0)
		}
		fmt.Println("unhealthy since", ms)
		os.Exit(1)
	case "live":
		d, _ := time.ParseDuration(os.Args[2])
		n, _ := strconv.Atoi(os.Args[3])
		select {
		case <-time.After(d):
		case <-term:
		}
		os.Exit(n)
	case "sign":
		digest, err := sign(os.Args[2])
		if err != nil {
			fmt.Println("sign:", err)
			os.Exit(1)
		}
		fmt.Println("digest", digest)
		fallthrough
	case "run":
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			if strings.HasPrefix(kv, "IOTEDGE_") || strings.HasPrefix(kv, "OUTPOST_") || strings.HasPrefix(kv, "TEST_") {
				fmt.Println(kv)
			}
		}
		fmt.Println("ready")
		t := time.NewTicker(50 * time.Millisecond)
		for i := 1; ; i++ {
			select {
			case <-term:
				fmt.Println("got SIGTERM")
				os.Exit(0)
			case <-t.C:
				if i%20 == 0 {
					fmt.Println("tick", i)
				}
			}
		}
	}
	fmt.Fprintln(os.Stderr, "mod: unknown command", os.Args[1])
	os.Exit(100)
}

// sign signs data with the module's primary key through its workload API,
// as the Azure IoT SDKs do.
func sign(data string) (string, error) {
	sock := strings.TrimPrefix(os.Getenv("IOTEDGE_WORKLOADURI"), "unix://")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	body, _ := json.Marshal(map[string]string{"keyId": "primary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString([]byte(data))})
	url := "http://workload/modules/" + os.Getenv("IOTEDGE_MODULEID") + "/genid/" + os.Getenv("IOTEDGE_MODULEGENERATIONID") + "/sign?api-version=2018-06-28"
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	var r struct{ Digest string }
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	return r.Digest, nil
}
