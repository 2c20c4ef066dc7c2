package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxUwsgiBody bounds the body uwsgiGet returns; the rest is discarded.
// Health checks and update_fetch only need the status and a hint of why.
const maxUwsgiBody = 1 << 20

// uwsgiVar is one CGI variable of a uwsgi request packet. A slice of them,
// not a map, keeps the packet's bytes deterministic.
type uwsgiVar struct{ key, value string }

// uwsgiGet sends one GET request over the uwsgi-protocol unix socket (what
// nginx's uwsgi_pass speaks) and returns the response's status and body
// (at most maxUwsgiBody bytes). host is the Host header and SERVER_NAME,
// scriptName the location's path prefix ("" or "/prefix"), path the rest
// of the URL ("/...", with an optional "?query"). The variables are the
// ones nginx's uwsgi_params sends, so WSGI and PHP apps see what they will
// see behind nginx. ctx bounds the whole exchange.
func uwsgiGet(ctx context.Context, socket, host, scriptName, path string) (status int, body []byte, err error) {
	vars, err := uwsgiGetVars(host, scriptName, path)
	if err != nil {
		return 0, nil, err
	}
	packet, err := encodeUwsgiPacket(vars)
	if err != nil {
		return 0, nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	// The context's end, expiry or cancellation, unblocks the reads: an
	// I/O error then always comes with ctx.Err() set.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(packet); err != nil {
		return 0, nil, ctxError(ctx, fmt.Errorf("sending the request: %w", err))
	}
	req := &http.Request{Method: http.MethodGet}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("the connection closed before a response (the worker died or was killed)")
		}
		return 0, nil, ctxError(ctx, fmt.Errorf("reading the response: %w", err))
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxUwsgiBody))
	if err != nil {
		return resp.StatusCode, body, ctxError(ctx, fmt.Errorf("reading the response body: %w", err))
	}
	return resp.StatusCode, body, nil
}

// ctxError prefers the context's reason over the I/O error it caused.
func ctxError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return err
}

// uwsgiGetVars builds a GET request's variables like nginx's uwsgi_params:
// PATH_INFO is the decoded path after the location prefix, REQUEST_URI the
// raw one with the prefix.
func uwsgiGetVars(host, scriptName, path string) ([]uwsgiVar, error) {
	if host == "" || strings.ContainsAny(host, "\x00\r\n /") {
		return nil, fmt.Errorf("uwsgi request: bad host %q", host)
	}
	if scriptName != "" && (!strings.HasPrefix(scriptName, "/") || strings.HasSuffix(scriptName, "/")) {
		return nil, fmt.Errorf("uwsgi request: script name %q must be empty or /prefix", scriptName)
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path+scriptName, "\x00\r\n") {
		return nil, fmt.Errorf("uwsgi request: path %q must start with /", path)
	}
	rawPath, query, _ := strings.Cut(path, "?")
	pathInfo, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, fmt.Errorf("uwsgi request: path %q: %w", path, err)
	}
	return []uwsgiVar{
		{"REQUEST_METHOD", "GET"},
		{"REQUEST_URI", scriptName + path},
		{"REQUEST_SCHEME", "http"},
		{"SCRIPT_NAME", scriptName},
		{"PATH_INFO", pathInfo},
		{"QUERY_STRING", query},
		{"CONTENT_TYPE", ""},
		{"CONTENT_LENGTH", ""},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"SERVER_NAME", host},
		{"SERVER_PORT", "80"},
		{"REMOTE_ADDR", "127.0.0.1"},
		{"REMOTE_PORT", "0"},
		{"HTTP_HOST", host},
		{"HTTP_USER_AGENT", "gitreceive-agent"},
		{"HTTP_CONNECTION", "close"},
	}, nil
}

// encodeUwsgiPacket is the uwsgi protocol's request header and variables
// block: modifier1 0 (WSGI, and PHP vassals load their plugin as 0:php),
// a little-endian uint16 size, modifier2 0, then each key and value as a
// little-endian uint16 length and its bytes.
func encodeUwsgiPacket(vars []uwsgiVar) ([]byte, error) {
	size := 0
	for _, v := range vars {
		if len(v.key) > 0xffff || len(v.value) > 0xffff {
			return nil, fmt.Errorf("uwsgi request: variable %s is longer than 65535 bytes", v.key)
		}
		size += 4 + len(v.key) + len(v.value)
	}
	if size > 0xffff {
		return nil, fmt.Errorf("uwsgi request: %d bytes of variables, more than the protocol's 65535", size)
	}
	p := make([]byte, 4, 4+size)
	p[0] = 0
	binary.LittleEndian.PutUint16(p[1:3], uint16(size))
	p[3] = 0
	for _, v := range vars {
		p = binary.LittleEndian.AppendUint16(p, uint16(len(v.key)))
		p = append(p, v.key...)
		p = binary.LittleEndian.AppendUint16(p, uint16(len(v.value)))
		p = append(p, v.value...)
	}
	return p, nil
}
