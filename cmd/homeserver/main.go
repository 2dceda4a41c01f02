// Command homeserver runs and inspects an MLS homeserver.
//
//	homeserver serve     run a homeserver (embedded Pebble and NATS by default)
//	homeserver replay    rebuild the projections from the log and compare
//	homeserver audit     check the Merkle tree and re-validate every event
//	homeserver testnet   run several federated homeservers on this machine
//	homeserver bench     measure the homeserver against this machine's own limits
//	homeserver version   print the version
//
// Run `homeserver <command> -h` for the flags of a command.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mlshome/homeserver/federation"
	"github.com/mlshome/homeserver/node"
)

const usage = `usage: homeserver <command> [flags]

commands:
  serve     run a homeserver (embedded Pebble and NATS by default)
  replay    rebuild every projection from the log and compare with the live ones
  audit     check the log against its signed checkpoint and re-validate every
            event; export, verify and prove events (homeserver audit help)
  bench     measure throughput, latency and memory against this machine's limits
  testnet   run several federated homeservers on this machine, optionally
            with a demo scenario (homeserver testnet -h)
  version   print the version
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr, getenv)
	case "replay":
		err = replay(args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(args[1:], stdout, stderr)
	case "testnet":
		err = testnetCmd(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "homeserver", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "homeserver: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintln(stderr, "homeserver:", err)
		return 1
	}
	return 0
}

var errUsage = fmt.Errorf("usage")

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func serve(args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, err := loadServeConfig(args, getenv)
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	policy, err := cfg.federationPolicy()
	if err != nil {
		return fmt.Errorf("federation policy: %w", err)
	}
	n, err := node.Open(node.Config{
		Domain:        cfg.Domain,
		DataDir:       cfg.Data,
		Listen:        cfg.Listen,
		Logger:        logger,
		RequestWindow: cfg.RequestWindow,
		SyncInterval:  cfg.SyncInterval,
		Bus: federation.BusConfig{
			URL:        cfg.NATS,
			Creds:      cfg.NATSCreds,
			Listen:     cfg.NATSListen,
			LeafRemote: cfg.NATSLeaf,
			LeafCreds:  cfg.NATSLeafCreds,
		},
		Tokens:            node.TokenPolicy{Allowance: cfg.TokenAllowance},
		RegistrationToken: cfg.RegistrationToken,
		Federation: node.FederationConfig{
			Scheme:     cfg.FederationScheme,
			AdminToken: cfg.AdminToken,
			RetryMax:   cfg.FederationRetryMax,
			Policy:     policy,
		},
	})
	if err != nil {
		return err
	}
	// Catch SIGINT/SIGTERM before the homeserver starts answering, so that
	// a stop signal as soon as it is ready means a graceful shutdown. (While
	// it opens, which can take long if its projections are rebuilt, a
	// signal still ends it at once: nothing is served yet, and an
	// interrupted rebuild starts again at the next start.)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(); err != nil {
		n.Shutdown(context.Background())
		return err
	}
	logger.Info("homeserver serving", "domain", cfg.Domain, "url", n.URL(), "data", cfg.Data, "log_size", n.Log.Size(), "version", version)
	<-ctx.Done()
	logger.Info("shutting down", "grace", cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return err
	}
	logger.Info("stopped", "log_size", n.Log.Size())
	return nil
}
