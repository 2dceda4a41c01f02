package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServeConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hs.toml")
	os.WriteFile(file, []byte("domain = \"file.test\"\nlisten = \"127.0.0.1:9000\"\nrequest-window = \"30s\"\nlog-level = \"debug\"\n"), 0o600)
	env := map[string]string{"HOMESERVER_LISTEN": "127.0.0.1:9001", "HOMESERVER_CONFIG": file}
	c, err := loadServeConfig([]string{"--log-level", "warn"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "file.test" || c.Listen != "127.0.0.1:9001" || c.LogLevel != "warn" || c.RequestWindow != 30*time.Second || c.Data != "./data" {
		t.Fatalf("precedence flag > env > file > default broken: %+v", c)
	}
}

func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("domian = \"typo.test\"\n"), 0o600)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unknown config key": {[]string{"--config", bad}, nil, `unknown key "domian"`},
		"bad env duration":   {nil, map[string]string{"HOMESERVER_REQUEST_WINDOW": "soon"}, "HOMESERVER_REQUEST_WINDOW"},
		"missing file":       {[]string{"--config", filepath.Join(dir, "none.toml")}, nil, "none.toml"},
		"stray argument":     {[]string{"extra"}, nil, "unexpected arguments"},
	} {
		_, err := loadServeConfig(tc.args, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", name, err, tc.want)
		}
	}
}

func TestServeFederationPolicyFlags(t *testing.T) {
	c, err := loadServeConfig([]string{"--federation-allow", "b.test, a.test", "--federation-block", "x.test"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.federationPolicy()
	if err != nil || p.Mode != "allowlist" || !p.Allowed("a.test") || p.Allowed("c.test") || p.Allowed("x.test") {
		t.Fatalf("policy %+v %v", p, err)
	}
	c, _ = loadServeConfig(nil, func(string) string { return "" })
	if p, _ := c.federationPolicy(); p.Mode != "open" || !p.Allowed("anyone.test") {
		t.Fatalf("default policy %+v", p)
	}
}
