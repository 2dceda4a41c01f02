package main

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/federation"
)

// serveConfig is everything `homeserver serve` can be told. Each field can
// come from a flag, an environment variable HOMESERVER_<NAME> (upper case,
// dashes as underscores) or the TOML config file (--config), in that order
// of precedence, else its default.
type serveConfig struct {
	Domain        string        `toml:"domain"`
	Data          string        `toml:"data"`
	Listen        string        `toml:"listen"`
	NATS          string        `toml:"nats"`
	NATSCreds     string        `toml:"nats-creds"`
	NATSLeaf      string        `toml:"nats-leaf"`
	NATSLeafCreds string        `toml:"nats-leaf-creds"`
	NATSListen    string        `toml:"nats-listen"`
	LogLevel      string        `toml:"log-level"`
	LogFormat     string        `toml:"log-format"`
	RequestWindow time.Duration `toml:"request-window"`
	ShutdownGrace time.Duration `toml:"shutdown-grace"`
	SyncInterval  time.Duration `toml:"sync-interval"`
	// Federation.
	FederationScheme   string        `toml:"federation-scheme"`
	FederationRetryMax time.Duration `toml:"federation-retry-max"`
	AdminToken         string        `toml:"admin-token"`
	FederationAllow    string        `toml:"federation-allow"`
	FederationBlock    string        `toml:"federation-block"`
	TokenAllowance     int           `toml:"token-allowance"`
	RegistrationToken  string        `toml:"registration-token"`
}

// bindServeFlags declares the flags of serve on fs, with defaults.
func bindServeFlags(fs *flag.FlagSet, c *serveConfig) *string {
	fs.StringVar(&c.Domain, "domain", "localhost:8080", "this homeserver's domain: the part after @ in its user ids and in its group ids")
	fs.StringVar(&c.Data, "data", "./data", "data directory: Pebble store, keys, embedded NATS state")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&c.NATS, "nats", "", "external NATS URL (nats://host:4222); empty runs an embedded NATS server")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "credentials file for --nats")
	fs.StringVar(&c.NATSLeaf, "nats-leaf", "", "hub URL the embedded NATS server joins as a leaf node")
	fs.StringVar(&c.NATSLeafCreds, "nats-leaf-creds", "", "credentials file for --nats-leaf")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "client listen address of the embedded NATS server (empty: in-process only)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&c.RequestWindow, "request-window", 2*time.Minute, "allowed clock difference for signed client requests")
	fs.DurationVar(&c.SyncInterval, "sync-interval", eventlog.DefaultMinSyncInterval, "group commit: how long the next log batch is held after an fsync while group requests are on their way, so that they share one fsync (negative: never)")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 10*time.Second, "time to finish in-flight requests on shutdown")
	fs.StringVar(&c.FederationScheme, "federation-scheme", "https", "scheme of other homeservers' well-known key URLs: https, or http for a loopback testnet")
	fs.DurationVar(&c.FederationRetryMax, "federation-retry-max", time.Minute, "longest wait between federation delivery retries while a homeserver is unreachable")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token of the admin API (PUT /v1/admin/federation/policy); empty disables it")
	fs.StringVar(&c.FederationAllow, "federation-allow", "", "comma-separated homeservers allowed to federate (allowlist mode); empty: open to all but --federation-block. A policy set through the admin API overrides both")
	fs.StringVar(&c.FederationBlock, "federation-block", "", "comma-separated homeservers refused")
	fs.IntVar(&c.TokenAllowance, "token-allowance", 50, "group-creation tokens per user per day (GC-6)")
	fs.StringVar(&c.RegistrationToken, "registration-token", "", "if set, POST /v1/users needs 'Authorization: Bearer <token>'; empty leaves registration open")
	return fs.String("config", "", "TOML config file (keys are the flag names)")
}

// loadServeConfig parses args, then fills every flag not given on the
// command line from the environment, then from the config file.
func loadServeConfig(args []string, getenv func(string) string) (*serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c := &serveConfig{}
	cfgPath := bindServeFlags(fs, c)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *cfgPath == "" {
		*cfgPath = getenv("HOMESERVER_CONFIG")
	}
	var file map[string]any
	if *cfgPath != "" {
		if _, err := toml.DecodeFile(*cfgPath, &file); err != nil {
			return nil, fmt.Errorf("config %s: %w", *cfgPath, err)
		}
	}
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		env := "HOMESERVER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", env, err))
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := f.Value.Set(fmt.Sprint(v)); err != nil {
				errs = append(errs, fmt.Sprintf("config %s: %v", f.Name, err))
			}
		}
	})
	for _, k := range slices.Sorted(maps.Keys(file)) {
		if fs.Lookup(k) == nil || k == "config" {
			errs = append(errs, fmt.Sprintf("config: unknown key %q", k))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}

// federationPolicy is the initial policy from --federation-allow and
// --federation-block.
func (c *serveConfig) federationPolicy() (federation.Policy, error) {
	split := func(s string) []string {
		var out []string
		for _, d := range strings.Split(s, ",") {
			if d = strings.TrimSpace(d); d != "" {
				out = append(out, d)
			}
		}
		return out
	}
	p := federation.Policy{Mode: "open", Block: split(c.FederationBlock)}
	if allow := split(c.FederationAllow); len(allow) > 0 {
		p.Mode, p.Allow = "allowlist", allow
	}
	return p.Normalize()
}
