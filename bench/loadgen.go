package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
)

// rawHTTP is the load generator's HTTP/1.1 client: one keep-alive
// connection that writes requests encoded before timing and reads each
// reply's status and body, in the spirit of wrk. The benchmarks measure
// the homeserver; a full client (net/http with retries) in the same
// process on the same cores would measure itself as much, so the delivery
// and federation figures send with this one, and the client library's own
// cost is a separate option (DeliveryOptions.Library).
type rawHTTP struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(base string) (*rawHTTP, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("load generator: %s: only http:// is supported", base)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	return &rawHTTP{conn: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// postRequest encodes a POST of body to base+path.
func postRequest(base, path, contentType string, body []byte) ([]byte, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", path, u.Host, contentType, len(body))
	b.Write(body)
	return b.Bytes(), nil
}

// do writes one encoded request and reads its reply. A reply that is not
// 2xx is an error carrying its body.
func (c *rawHTTP) do(req []byte) error {
	if _, err := c.conn.Write(req); err != nil {
		return err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("load generator: read status: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("load generator: bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("load generator: bad status line %q", line)
	}
	length := -1
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("load generator: read header: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return fmt.Errorf("load generator: bad header %q", h)
		}
		if bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || length < 0 {
				return fmt.Errorf("load generator: bad Content-Length %q", v)
			}
		} else if bytes.EqualFold(k, []byte("Transfer-Encoding")) {
			return fmt.Errorf("load generator: unsupported Transfer-Encoding %q", v)
		}
	}
	if length < 0 {
		return fmt.Errorf("load generator: reply without Content-Length")
	}
	if status >= 200 && status <= 299 {
		if _, err := c.br.Discard(length); err != nil {
			return fmt.Errorf("load generator: read body: %w", err)
		}
		return nil
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return fmt.Errorf("load generator: read body: %w", err)
	}
	return fmt.Errorf("load generator: HTTP %d: %s", status, body)
}

func (c *rawHTTP) Close() error { return c.conn.Close() }

// messageSender sends one group's sealed messages over its own keep-alive
// connection, each request encoded before timing.
type messageSender struct {
	conn *rawHTTP
	reqs [][]byte
}

// send posts message j.
func (s *messageSender) send(j int) error { return s.conn.do(s.reqs[j]) }

// newMessageSenders encodes sealed[i] as message posts to groups[i] on the
// homeserver at base, and dials a connection for each group. The caller
// closes them with closeSenders, also after an error.
func newMessageSenders(base string, groups []*client.Group, sealed [][]*client.Sealed) ([]*messageSender, error) {
	out := make([]*messageSender, len(groups))
	for i, g := range groups {
		s := &messageSender{}
		for _, m := range sealed[i] {
			body, err := m.Request()
			if err != nil {
				return out, err
			}
			req, err := postRequest(base, g.Path(), api.MessageContentType, body)
			if err != nil {
				return out, err
			}
			s.reqs = append(s.reqs, req)
		}
		c, err := dialRaw(base)
		if err != nil {
			return out, err
		}
		s.conn = c
		out[i] = s
	}
	return out, nil
}

func closeSenders(ss []*messageSender) {
	for _, s := range ss {
		if s != nil {
			s.conn.Close()
		}
	}
}
