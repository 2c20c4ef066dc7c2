package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeUwsgiPacket reads one request packet: encodeUwsgiPacket's inverse,
// what a uWSGI server does first.
func decodeUwsgiPacket(r io.Reader) (modifier1 byte, vars []uwsgiVar, err error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	data := make([]byte, binary.LittleEndian.Uint16(head[1:3]))
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, err
	}
	read := func() (string, error) {
		if len(data) < 2 {
			return "", errors.New("uwsgi packet: truncated length")
		}
		n := int(binary.LittleEndian.Uint16(data))
		if len(data) < 2+n {
			return "", errors.New("uwsgi packet: truncated string")
		}
		s := string(data[2 : 2+n])
		data = data[2+n:]
		return s, nil
	}
	for len(data) > 0 {
		k, err := read()
		if err != nil {
			return 0, nil, err
		}
		v, err := read()
		if err != nil {
			return 0, nil, err
		}
		vars = append(vars, uwsgiVar{k, v})
	}
	return head[0], vars, nil
}

func TestUwsgiPacketRoundTrip(t *testing.T) {
	for _, vars := range [][]uwsgiVar{
		nil,
		{{"REQUEST_METHOD", "GET"}},
		{{"EMPTY", ""}, {"", "empty key"}, {"UNICODE", "grüße ✓"}, {"BINARY", "\x00\xff\n"}},
		{{"LONG", strings.Repeat("x", 60000)}},
	} {
		p, err := encodeUwsgiPacket(vars)
		if err != nil {
			t.Fatal(err)
		}
		if p[0] != 0 || p[3] != 0 || int(binary.LittleEndian.Uint16(p[1:3])) != len(p)-4 {
			t.Errorf("header %v for a %d byte packet", p[:4], len(p))
		}
		mod, got, err := decodeUwsgiPacket(bytes.NewReader(p))
		if err != nil || mod != 0 || !reflect.DeepEqual(got, vars) {
			t.Errorf("round trip of %d vars: %v %d %v", len(vars), err, mod, len(got))
		}
	}
	// The size field is 16 bits: bigger requests are refused, not cut.
	for _, vars := range [][]uwsgiVar{
		{{"BIG", strings.Repeat("x", 70000)}},
		{{"A", strings.Repeat("x", 40000)}, {"B", strings.Repeat("x", 40000)}},
	} {
		if _, err := encodeUwsgiPacket(vars); err == nil {
			t.Errorf("a packet over 65535 bytes was encoded")
		}
	}
	// Exact bytes of a small one.
	p, _ := encodeUwsgiPacket([]uwsgiVar{{"A", "bc"}})
	if want := []byte{0, 7, 0, 0, 1, 0, 'A', 2, 0, 'b', 'c'}; !bytes.Equal(p, want) {
		t.Errorf("packet % x, want % x", p, want)
	}
}

func TestUwsgiGetVars(t *testing.T) {
	for _, c := range []struct {
		host, script, path string
		want               map[string]string
		err                string
	}{
		{"app.test", "", "/", map[string]string{"PATH_INFO": "/", "REQUEST_URI": "/", "QUERY_STRING": "", "SCRIPT_NAME": "", "HTTP_HOST": "app.test", "SERVER_NAME": "app.test"}, ""},
		{"app.test", "/blog", "/a%20b/c?x=1&y=%25", map[string]string{"PATH_INFO": "/a b/c", "REQUEST_URI": "/blog/a%20b/c?x=1&y=%25", "QUERY_STRING": "x=1&y=%25", "SCRIPT_NAME": "/blog"}, ""},
		{"app.test", "", "/health?", map[string]string{"PATH_INFO": "/health", "QUERY_STRING": ""}, ""},
		{"", "", "/", nil, "bad host"},
		{"a b", "", "/", nil, "bad host"},
		{"app.test", "", "relative", nil, "must start with /"},
		{"app.test", "", "/x\r\ny", nil, "must start with /"},
		{"app.test", "blog", "/", nil, "script name"},
		{"app.test", "/blog/", "/", nil, "script name"},
		{"app.test", "", "/%zz", nil, "invalid URL escape"},
	} {
		vars, err := uwsgiGetVars(c.host, c.script, c.path)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q %q %q: %v, want an error with %q", c.host, c.script, c.path, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q %q %q: %v", c.host, c.script, c.path, err)
			continue
		}
		got := map[string]string{}
		for _, v := range vars {
			got[v.key] = v.value
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%q %q %q: %s = %q, want %q", c.host, c.script, c.path, k, got[k], v)
			}
		}
		if got["REQUEST_METHOD"] != "GET" || got["SERVER_PROTOCOL"] != "HTTP/1.1" || got["REMOTE_ADDR"] == "" {
			t.Errorf("missing CGI variables: %v", got)
		}
	}
}

// fakeUwsgi serves one unix socket: each connection's packet is decoded
// and handed to respond, which writes the raw response (as uWSGI does).
func fakeUwsgi(t *testing.T, respond func(vars map[string]string, w io.Writer)) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				mod, vars, err := decodeUwsgiPacket(conn)
				if err != nil || mod != 0 {
					return
				}
				m := map[string]string{}
				for _, v := range vars {
					m[v.key] = v.value
				}
				bw := bufio.NewWriter(conn)
				respond(m, bw)
				bw.Flush()
			}()
		}
	}()
	return socket
}

func TestUwsgiGet(t *testing.T) {
	big := strings.Repeat("y", maxUwsgiBody+1000)
	socket := fakeUwsgi(t, func(v map[string]string, w io.Writer) {
		switch v["PATH_INFO"] {
		case "/echo":
			body := fmt.Sprintf("%s|%s|%s|%s", v["HTTP_HOST"], v["SCRIPT_NAME"], v["QUERY_STRING"], v["REQUEST_URI"])
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		case "/nolength":
			// uWSGI with an app that sets no length: the body ends with
			// the connection.
			fmt.Fprintf(w, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ndown for now")
		case "/chunked":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		case "/big":
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big)
		case "/die":
			// A worker killed by harakiri: nothing at all.
		case "/hang":
			time.Sleep(3 * time.Second)
		}
	})
	ctx := context.Background()

	status, body, err := uwsgiGet(ctx, socket, "app.test", "/p", "/echo?a=1")
	if err != nil || status != 200 || string(body) != "app.test|/p|a=1|/p/echo?a=1" {
		t.Errorf("/echo: %d %q %v", status, body, err)
	}
	status, body, err = uwsgiGet(ctx, socket, "app.test", "", "/nolength")
	if err != nil || status != 503 || string(body) != "down for now" {
		t.Errorf("/nolength: %d %q %v", status, body, err)
	}
	status, body, err = uwsgiGet(ctx, socket, "app.test", "", "/chunked")
	if err != nil || status != 200 || string(body) != "abcde" {
		t.Errorf("/chunked: %d %q %v", status, body, err)
	}
	status, body, err = uwsgiGet(ctx, socket, "app.test", "", "/big")
	if err != nil || status != 200 || len(body) != maxUwsgiBody {
		t.Errorf("/big: %d, %d bytes, %v; want the first %d bytes", status, len(body), err, maxUwsgiBody)
	}
	_, _, err = uwsgiGet(ctx, socket, "app.test", "", "/die")
	if err == nil || !strings.Contains(err.Error(), "closed before a response") {
		t.Errorf("/die: %v, want an error saying the connection closed", err)
	}

	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, _, err = uwsgiGet(tctx, socket, "app.test", "", "/hang")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > time.Second {
		t.Errorf("/hang with a 200 ms context: %v after %s", err, time.Since(began))
	}
	cctx, cancelNow := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancelNow)
	_, _, err = uwsgiGet(cctx, socket, "app.test", "", "/hang")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("/hang, cancelled: %v", err)
	}

	if _, _, err := uwsgiGet(ctx, filepath.Join(t.TempDir(), "none.sock"), "app.test", "", "/"); err == nil {
		t.Errorf("a missing socket gave no error")
	}
	if _, _, err := uwsgiGet(ctx, socket, "app.test", "", "no-slash"); err == nil {
		t.Errorf("a relative path gave no error")
	}
}
