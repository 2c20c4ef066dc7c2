package services

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// A small RESP2 client: enough to administer the services node's Redis
// (AUTH, ACL, SELECT, SCAN, DUMP, RESTORE, FLUSHDB) without a module
// dependency. Commands go out as arrays of bulk strings, so keys and values
// are binary safe.

// Limits on what a reply may declare, so that a broken or hostile peer
// cannot make the parser allocate without bound or recurse deeply.
const (
	respMaxLine  = 64 << 10  // simple string, error, integer, length line
	respMaxBulk  = 512 << 20 // Redis' own proto-max-bulk-len default
	respMaxArray = 1 << 24
	respMaxDepth = 8
	// respDialTimeout bounds connecting when ctx has no earlier deadline;
	// respIOTimeout bounds each command's round trip likewise.
	respDialTimeout = 5 * time.Second
	respIOTimeout   = 60 * time.Second
)

// respReply is one RESP2 reply.
type respReply struct {
	Kind  byte        // '+' simple string, '-' error, ':' integer, '$' bulk, '*' array
	Str   []byte      // '+', '-', '$'
	Int   int64       // ':'
	Array []respReply // '*'
	Null  bool        // "$-1" or "*-1"
}

// respError is an error reply ("-ERR ...", "-NOPERM ...", "-WRONGPASS ...").
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

// err is the reply as an error, if it is an error reply.
func (r respReply) err() error {
	if r.Kind == '-' {
		return respError(r.Str)
	}
	return nil
}

// readRESPReply parses one reply from r.
func readRESPReply(r *bufio.Reader) (respReply, error) {
	return readRESPReplyDepth(r, 0)
}

func readRESPReplyDepth(r *bufio.Reader, depth int) (respReply, error) {
	if depth > respMaxDepth {
		return respReply{}, fmt.Errorf("redis reply: arrays nested deeper than %d", respMaxDepth)
	}
	line, err := readRESPLine(r)
	if err != nil {
		return respReply{}, err
	}
	if len(line) == 0 {
		return respReply{}, errors.New("redis reply: empty line")
	}
	kind, rest := line[0], line[1:]
	switch kind {
	case '+', '-':
		return respReply{Kind: kind, Str: rest}, nil
	case ':':
		n, err := parseRESPInt(rest)
		if err != nil {
			return respReply{}, err
		}
		return respReply{Kind: kind, Int: n}, nil
	case '$':
		n, err := parseRESPInt(rest)
		if err != nil {
			return respReply{}, err
		}
		if n == -1 {
			return respReply{Kind: kind, Null: true}, nil
		}
		if n < 0 || n > respMaxBulk {
			return respReply{}, fmt.Errorf("redis reply: bulk length %d out of range", n)
		}
		// ReadAll grows with what arrives, not with what was declared.
		data, err := io.ReadAll(io.LimitReader(r, n))
		if err != nil {
			return respReply{}, fmt.Errorf("redis reply: %w", err)
		}
		if int64(len(data)) != n {
			return respReply{}, fmt.Errorf("redis reply: bulk string: %w", io.ErrUnexpectedEOF)
		}
		var crlf [2]byte
		if _, err := io.ReadFull(r, crlf[:]); err != nil {
			return respReply{}, fmt.Errorf("redis reply: bulk string: %w", noEOF(err))
		}
		if crlf != [2]byte{'\r', '\n'} {
			return respReply{}, errors.New("redis reply: bulk string not followed by CRLF")
		}
		return respReply{Kind: kind, Str: data}, nil
	case '*':
		n, err := parseRESPInt(rest)
		if err != nil {
			return respReply{}, err
		}
		if n == -1 {
			return respReply{Kind: kind, Null: true}, nil
		}
		if n < 0 || n > respMaxArray {
			return respReply{}, fmt.Errorf("redis reply: array length %d out of range", n)
		}
		arr := make([]respReply, 0, min(n, 1024))
		for range n {
			e, err := readRESPReplyDepth(r, depth+1)
			if err != nil {
				return respReply{}, err
			}
			arr = append(arr, e)
		}
		return respReply{Kind: kind, Array: arr}, nil
	default:
		return respReply{}, fmt.Errorf("redis reply: unknown type byte %q", kind)
	}
}

// readRESPLine reads up to CRLF (not included), at most respMaxLine bytes.
func readRESPLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > respMaxLine+2 {
			return nil, fmt.Errorf("redis reply: line longer than %d bytes", respMaxLine)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, fmt.Errorf("redis reply: %w", io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("redis reply: %w", err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errors.New("redis reply: line not ended by CRLF")
	}
	line = line[:len(line)-2]
	if bytes.ContainsAny(line, "\r\n") {
		return nil, errors.New("redis reply: stray CR or LF in line")
	}
	return line, nil
}

// parseRESPInt is a strict decimal int64: what Redis itself writes.
func parseRESPInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("redis reply: bad integer %q", b)
	}
	for i, c := range b {
		if !(c >= '0' && c <= '9' || i == 0 && c == '-' && len(b) > 1) {
			return 0, fmt.Errorf("redis reply: bad integer %q", b)
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis reply: bad integer %q", b)
	}
	return n, nil
}

// noEOF turns a bare EOF in the middle of a reply into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendRESPCommand encodes a command as an array of bulk strings.
func appendRESPCommand(buf []byte, args ...[]byte) []byte {
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, '\r', '\n')
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, '\r', '\n')
		buf = append(buf, a...)
		buf = append(buf, '\r', '\n')
	}
	return buf
}

// respConn is one connection to a Redis server.
type respConn struct {
	conn net.Conn
	r    *bufio.Reader
	buf  []byte // pending commands
	n    int    // how many replies are pending for buf
}

// dialRESP connects to addr within ctx (and respDialTimeout).
func dialRESP(ctx context.Context, addr string) (*respConn, error) {
	d := net.Dialer{Timeout: respDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &respConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}, nil
}

func (c *respConn) Close() error { return c.conn.Close() }

// queue adds a command to the next flush.
func (c *respConn) queue(args ...[]byte) {
	c.buf = appendRESPCommand(c.buf, args...)
	c.n++
}

// flush sends the queued commands and reads one reply per command. A
// server error reply is a reply, not an error: callers check each
// (respReply.err). err is set for I/O and protocol failures, after which
// the connection is unusable.
func (c *respConn) flush(ctx context.Context) ([]respReply, error) {
	deadline := time.Now().Add(respIOTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// Cancellation interrupts blocked reads and writes at once.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	buf, n := c.buf, c.n
	c.buf, c.n = c.buf[:0], 0
	if _, err := c.conn.Write(buf); err != nil {
		return nil, ctxErr(ctx, err)
	}
	replies := make([]respReply, 0, n)
	for range n {
		r, err := readRESPReply(c.r)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		replies = append(replies, r)
	}
	return replies, nil
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("redis: %w", ctx.Err())
	}
	// The connection's deadline is the context's: it may fire a moment
	// before the context notices.
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("redis: %w", context.DeadlineExceeded)
	}
	return fmt.Errorf("redis: %w", err)
}

// do runs one command; an error reply is returned as a respError.
func (c *respConn) do(ctx context.Context, args ...string) (respReply, error) {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return c.doBytes(ctx, b...)
}

func (c *respConn) doBytes(ctx context.Context, args ...[]byte) (respReply, error) {
	c.queue(args...)
	replies, err := c.flush(ctx)
	if err != nil {
		return respReply{}, err
	}
	if err := replies[0].err(); err != nil {
		return replies[0], err
	}
	return replies[0], nil
}
