// Command etcdpages reads prefixes of a hub's etcd store page by page, as a
// replica's queries and device lists do, and prints for each what it cost:
// range requests, keys etcd walked for them (their ranges' counts) and keys
// read, with and without values.
//
//	go run ./scripts/bench/etcdpages -etcd http://127.0.0.1:2379 -etcd-prefix /f100k
package main

import (
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/store/etcdstore"
)

func main() {
	endpoints := flag.String("etcd", "http://127.0.0.1:2379", "etcd endpoints (URL,…)")
	prefix := flag.String("etcd-prefix", etcdstore.DefaultPrefix, "the hub's etcd key prefix")
	prefixes := flag.String("prefixes", "devices/,modules/", "the store prefixes to read, separated by commas")
	page := flag.Int("page", 1000, "records a page")
	flag.Parse()
	st, err := etcdstore.Open(etcdstore.Config{Endpoints: strings.Split(*endpoints, ","), Prefix: *prefix, RequestTimeout: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	for _, p := range strings.Split(*prefixes, ",") {
		for _, keysOnly := range []bool{false, true} {
			read := st.Range
			if keysOnly {
				read = st.RangeKeys
			}
			req0, walked0, n0 := st.RangeStats()
			start := time.Now()
			after := ""
			for {
				recs, err := read(p, after, *page)
				if err != nil {
					log.Fatal(err)
				}
				if len(recs) < *page {
					break
				}
				after = recs[len(recs)-1].Key
			}
			req, walked, n := st.RangeStats()
			fmt.Printf("%s keys-only=%v: %d records in %v: %d range requests, etcd walked %d keys\n",
				p, keysOnly, n-n0, time.Since(start).Round(time.Millisecond), req-req0, walked-walked0)
		}
	}
}
