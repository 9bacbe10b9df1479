// Command prog is the program the runtime conformance suite runs in every runtime: a
// static binary that does what its arguments say, in order.
//
//	id            print "uid=U gid=G groups=G1,G2"
//	env NAME      print "NAME=value" (or "NAME unset")
//	args          print "args=" and all its arguments joined by |; ends the program
//	cwd           print "cwd=" and the working directory
//	out TEXT      print TEXT to stdout
//	err TEXT      print TEXT to stderr
//	lines N       print lines "line 1" … "line N"
//	dial PATH     connect to the unix socket PATH, send "ping", print "dial: " and the answer
//	dialenv       dial $IOTEDGE_WORKLOADURI (unix://PATH) as dial does
//	write PATH    create PATH and print "wrote PATH" (or the error)
//	ready         print "ready"
//	tick          print "tick N" every 20 ms until SIGTERM
//	sleep         wait for SIGTERM, print "got SIGTERM", go on
//	stubborn      ignore SIGTERM from now on
//	forever       sleep forever
//	mark TEXT     nothing: TEXT in the command line tells the process (and its children) apart
//	spawn TEXT    start a child "prog mark TEXT forever" on the same stdio, in its process group
//	exit N        exit with code N
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	args := os.Args[1:]
	next := func() string {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "prog: missing argument")
			os.Exit(100)
		}
		a := args[0]
		args = args[1:]
		return a
	}
	for len(args) > 0 {
		switch cmd := next(); cmd {
		case "id":
			gs, _ := os.Getgroups()
			var s []string
			for _, g := range gs {
				s = append(s, strconv.Itoa(g))
			}
			fmt.Printf("uid=%d gid=%d groups=%s\n", os.Getuid(), os.Getgid(), strings.Join(s, ","))
		case "env":
			name := next()
			if v, ok := os.LookupEnv(name); ok {
				fmt.Printf("%s=%s\n", name, v)
			} else {
				fmt.Printf("%s unset\n", name)
			}
		case "args":
			fmt.Printf("args=%s\n", strings.Join(os.Args[1:], "|"))
			args = nil
		case "cwd":
			wd, _ := os.Getwd()
			fmt.Printf("cwd=%s\n", wd)
		case "out":
			fmt.Println(next())
		case "err":
			fmt.Fprintln(os.Stderr, next())
		case "lines":
			n, _ := strconv.Atoi(next())
			for i := 1; i <= n; i++ {
				fmt.Printf("line %d\n", i)
			}
		case "dial", "dialenv":
			var path string
			if cmd == "dial" {
				path = next()
			} else {
				path = strings.TrimPrefix(os.Getenv("IOTEDGE_WORKLOADURI"), "unix://")
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				fmt.Printf("dial: %v\n", err)
				continue
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("ping\n"))
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			c.Close()
			if err != nil {
				fmt.Printf("dial: read: %v\n", err)
				continue
			}
			fmt.Printf("dial: %s\n", strings.TrimSpace(string(buf[:n])))
		case "write":
			path := next()
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				fmt.Printf("write: %v\n", err)
			} else {
				fmt.Printf("wrote %s\n", path)
			}
		case "ready":
			fmt.Println("ready")
		case "tick":
			t := time.NewTicker(20 * time.Millisecond)
			for i := 1; ; i++ {
				select {
				case <-term:
					fmt.Println("got SIGTERM")
					os.Exit(0)
				case <-t.C:
					fmt.Printf("tick %d\n", i)
				}
			}
		case "sleep":
			<-term
			fmt.Println("got SIGTERM")
		case "stubborn":
			signal.Ignore(syscall.SIGTERM)
		case "forever":
			select {}
		case "mark":
			next()
		case "spawn":
			text := next()
			self, err := os.Executable()
			if err != nil {
				self = "/proc/self/exe"
			}
			p, err := os.StartProcess(self, []string{os.Args[0], "mark", text, "forever"}, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
			if err != nil {
				fmt.Printf("spawn: %v\n", err)
				continue
			}
			fmt.Printf("spawned %d\n", p.Pid)
		case "exit":
			n, _ := strconv.Atoi(next())
			os.Exit(n)
		default:
			fmt.Fprintf(os.Stderr, "prog: unknown command %q\n", cmd)
			os.Exit(100)
		}
	}
}
