package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/outpost-edge/outpost/internal/store/etcdstore"
)

// addHubStoreFlags adds the flags that choose where the hub keeps its records.
func addHubStoreFlags(fl *pflag.FlagSet) {
	fl.String("store", "file", "where the hub keeps its records: file (its data dir) or etcd (shared by replicas: see docs/scale.md)")
	fl.StringSlice("etcd-endpoints", nil, "with --store etcd: etcd client URLs, comma-separated (e.g. https://10.0.0.1:2379,https://10.0.0.2:2379)")
	fl.String("etcd-prefix", etcdstore.DefaultPrefix, "with --store etcd: the prefix of the hub's etcd keys (one prefix per hub)")
	fl.String("etcd-cacert", "", "with --store etcd: CA file (PEM) to verify etcd's certificates")
	fl.String("etcd-cert", "", "with --store etcd: client certificate file (PEM) for etcd")
	fl.String("etcd-key", "", "with --store etcd: client key file (PEM) for etcd")
	fl.String("etcd-user", "", "with --store etcd: etcd user as USER or USER:PASSWORD (else the password is read from OUTPOST_ETCD_PASSWORD)")
	fl.Int("etcd-max-request-bytes", etcdstore.DefaultMaxRequestBytes, "with --store etcd: etcd's --max-request-bytes; larger records are refused before they reach etcd")
	fl.Int("etcd-max-txn-ops", etcdstore.DefaultMaxTxnOps, "with --store etcd: etcd's --max-txn-ops")
}

// hubEtcdConfig reads the store flags: nil for the file store.
func hubEtcdConfig(v *viper.Viper) (*etcdstore.Config, error) {
	switch kind := v.GetString("store"); kind {
	case "", "file":
		for _, name := range []string{"etcd-endpoints", "etcd-cacert", "etcd-cert", "etcd-key", "etcd-user"} {
			if v.IsSet(name) {
				return nil, flagErrorf("--%s is for --store etcd, and the store is %q", name, kind)
			}
		}
		return nil, nil
	case "etcd":
	default:
		return nil, flagErrorf("--store %q: want file or etcd", kind)
	}
	var eps []string
	for _, e := range v.GetStringSlice("etcd-endpoints") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, flagErrorf("--store etcd needs --etcd-endpoints URL,… (e.g. http://127.0.0.1:2379)")
	}
	cfg := &etcdstore.Config{
		Endpoints:       eps,
		Prefix:          v.GetString("etcd-prefix"),
		MaxRequestBytes: v.GetInt("etcd-max-request-bytes"),
		MaxTxnOps:       v.GetInt("etcd-max-txn-ops"),
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || strings.ContainsAny(cfg.Prefix, " \t\n") {
		return nil, flagErrorf("--etcd-prefix %q: want a path such as /outpost", cfg.Prefix)
	}
	if u := v.GetString("etcd-user"); u != "" {
		name, pass, ok := strings.Cut(u, ":")
		if !ok {
			pass = os.Getenv("OUTPOST_ETCD_PASSWORD")
		}
		if name == "" || pass == "" {
			return nil, flagErrorf("--etcd-user %q: give USER:PASSWORD, or USER with OUTPOST_ETCD_PASSWORD set", name)
		}
		cfg.Username, cfg.Password = name, pass
	}
	cacert, cert, key := v.GetString("etcd-cacert"), v.GetString("etcd-cert"), v.GetString("etcd-key")
	if (cert == "") != (key == "") {
		return nil, flagErrorf("give both --etcd-cert and --etcd-key, or neither")
	}
	if cacert != "" || cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cacert != "" {
			pem, err := os.ReadFile(cacert)
			if err != nil {
				return nil, flagErrorf("--etcd-cacert: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, flagErrorf("--etcd-cacert %s holds no PEM certificate", cacert)
			}
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, flagErrorf("--etcd-cert %s / --etcd-key %s: %v", cert, key, err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// openHubEtcd opens the etcd store the flags name, or returns nil for the file store.
func openHubEtcd(v *viper.Viper) (*etcdstore.Store, error) {
	cfg, err := hubEtcdConfig(v)
	if err != nil || cfg == nil {
		return nil, err
	}
	st, err := etcdstore.Open(*cfg)
	if err != nil {
		return nil, &ExitError{Code: ExitUnavailable, Err: fmt.Errorf("hub: %w", err)}
	}
	return st, nil
}
