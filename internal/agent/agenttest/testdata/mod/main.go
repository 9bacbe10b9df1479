// Command mod is the module the agent's tests run:
//
//	mod run       print the IOTEDGE_* and OUTPOST_* environment, "ready", then
//	              "tick N" every 50 ms until SIGTERM; print "got SIGTERM" and exit 0
//	mod exit N    exit with code N at once
//	mod live D N  run for the duration D, then exit with code N
//	mod healthy-until MS  exit 0 before the Unix time MS (milliseconds), else
//	              print "unhealthy since MS" and exit 1: a health check
package main

import (
	"fmt"
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
