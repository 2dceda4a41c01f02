package federation

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/mlshome/homeserver/identity"
)

// ClusterUser is one homeserver's account on an external NATS server.
type ClusterUser struct {
	// Domain is the homeserver's domain, also its NATS user name.
	Domain string
	// Password, plain or (better) a bcrypt hash ("nats server passwd").
	Password string
}

// ClusterConfigParams says what [ClusterConfig] renders.
type ClusterConfigParams struct {
	// Listen is the client listen address, e.g. "0.0.0.0:4222".
	Listen string
	// StoreDir is the JetStream store directory.
	StoreDir string
	// Users are the homeservers.
	Users []ClusterUser
}

// ClusterPermissions returns the publish and subscribe allow lists of
// domain's user on an external NATS server with JetStream, where every
// homeserver's delivery stream lives on the shared server:
//
//   - hs.<self>.> and hs.*.<self>.>, as with a hub ([HubPermissions]);
//   - the JetStream API calls of a [Receiver] on its own stream only
//     (create/update/info of FED_IN_<self>, create of its durable consumer,
//     pull requests, message get for the cursor service) and acks of its
//     own consumer, in both ack subject formats;
//   - its own inboxes _I.<self>.> for the API's answers and pulled
//     messages (the connection uses [InboxPrefix]).
//
// A homeserver cannot touch another's stream: no delete, purge or consumer
// API on it, and deliveries into it only on subjects naming itself as
// origin. Deliveries need no API permission: a JetStream publish is an
// ordinary publish whose acknowledgement the server sends to the
// publisher's reply subject.
func ClusterPermissions(domain string) (publish, subscribe []string) {
	tok, stream := Token(domain), StreamName(domain)
	api := "$JS.API."
	publish = []string{
		subjectPrefix + "." + tok + ".>",
		api + "STREAM.CREATE." + stream,
		api + "STREAM.UPDATE." + stream,
		api + "STREAM.INFO." + stream,
		api + "STREAM.MSG.GET." + stream,
		api + "CONSUMER.CREATE." + stream + "." + ConsumerName,
		api + "CONSUMER.INFO." + stream + "." + ConsumerName,
		api + "CONSUMER.MSG.NEXT." + stream + "." + ConsumerName,
		"$JS.ACK." + stream + "." + ConsumerName + ".>",
		"$JS.ACK.*.*." + stream + "." + ConsumerName + ".>",
	}
	subscribe = []string{subjectPrefix + ".*." + tok + ".>", InboxPrefix(domain) + ".>"}
	return publish, subscribe
}

var clusterTemplate = template.Must(template.New("nats").Funcs(template.FuncMap{"q": quoteConf}).Parse(
	`# NATS server configuration for homeservers federating through a shared
# server (rendered by federation.ClusterConfig). Each homeserver connects
# with --nats nats://<domain>:<password>@host:port (or a credentials file)
# and may publish only as itself; see federation.ClusterPermissions.
listen: {{q .Listen}}
# Room for a 4 MiB federation envelope plus headers.
max_payload: {{.MaxPayload}}

jetstream {
  store_dir: {{q .StoreDir}}
}

authorization {
  users = [
{{- range .Users}}
    {
      user: {{q .Domain}}
      password: {{q .Password}}
      permissions: {
        publish: { allow: [{{range $i, $s := .Publish}}{{if $i}}, {{end}}{{q $s}}{{end}}] }
        subscribe: { allow: [{{range $i, $s := .Subscribe}}{{if $i}}, {{end}}{{q $s}}{{end}}] }
      }
    }
{{- end}}
  ]
}
`))

// ClusterConfig renders a nats-server configuration file for homeservers
// that share one external NATS server with JetStream: one user per
// homeserver with [ClusterPermissions], and a max_payload of [MaxPayload].
// For a cluster add the usual cluster block; for the testnet's leaf node
// topology see [StartHub] and [HubPermissions].
func ClusterConfig(p ClusterConfigParams) (string, error) {
	if p.Listen == "" {
		p.Listen = "0.0.0.0:4222"
	}
	if p.StoreDir == "" {
		p.StoreDir = "/var/lib/nats/jetstream"
	}
	type user struct {
		Domain, Password   string
		Publish, Subscribe []string
	}
	data := struct {
		Listen, StoreDir string
		MaxPayload       int
		Users            []user
	}{Listen: p.Listen, StoreDir: p.StoreDir, MaxPayload: MaxPayload}
	for _, u := range p.Users {
		if err := identity.ValidateDomain(u.Domain); err != nil {
			return "", fmt.Errorf("cluster config: %w", err)
		}
		if u.Password == "" {
			return "", fmt.Errorf("cluster config: no password for %s", u.Domain)
		}
		pub, sub := ClusterPermissions(u.Domain)
		data.Users = append(data.Users, user{u.Domain, u.Password, pub, sub})
	}
	var b strings.Builder
	if err := clusterTemplate.Execute(&b, data); err != nil {
		return "", fmt.Errorf("cluster config: %w", err)
	}
	return b.String(), nil
}

// quoteConf quotes s as a NATS configuration string.
func quoteConf(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
