package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve answers health, readiness, metrics and the well-known keys, and a
// SIGTERM stops it cleanly with every acknowledged event kept.
func TestServeEndpointsAndGracefulShutdown(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServe(t, data)
	defer cmd.Process.Kill()
	hc := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 5; i++ {
		if ok, err := registerUser(hc, base, "user"+string(rune('a'+i))); !ok || err != nil {
			t.Fatalf("register: %v %v", ok, err)
		}
	}
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, `"log_size":10`) {
		t.Fatalf("readyz %d %s", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, m := range []string{"homeserver_events_appended_total 10", "homeserver_append_batch_commands_count", "homeserver_append_commit_seconds_bucket", `homeserver_http_requests_total{route="POST /v1/users",status="201"} 5`} {
		if code != 200 || !strings.Contains(body, m) {
			t.Fatalf("metrics lack %q", m)
		}
	}
	if code, body := get(t, base+"/.well-known/mls-homeserver"); code != 200 || !strings.Contains(body, "crash.test") {
		t.Fatalf("well-known %d %s", code, body)
	}
	if code, body := get(t, base+"/v1/log/checkpoint"); code != 200 || !strings.HasPrefix(body, "crash.test\n10\n") {
		t.Fatalf("checkpoint %d %q", code, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	checkStore(t, data, []string{"usera@crash.test", "usere@crash.test"})
}
