package services

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadRESPReply(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	for _, tc := range []struct {
		name string
		in   string
		want respReply
	}{
		{"simple", "+OK\r\n", respReply{Kind: '+', Str: []byte("OK")}},
		{"empty simple", "+\r\n", respReply{Kind: '+', Str: []byte{}}},
		{"error", "-NOPERM no\r\n", respReply{Kind: '-', Str: []byte("NOPERM no")}},
		{"integer", ":42\r\n", respReply{Kind: ':', Int: 42}},
		{"negative", ":-2\r\n", respReply{Kind: ':', Int: -2}},
		{"min int64", ":-9223372036854775808\r\n", respReply{Kind: ':', Int: -9223372036854775808}},
		{"bulk", "$5\r\nhello\r\n", respReply{Kind: '$', Str: []byte("hello")}},
		{"binary bulk", "$4\r\n\x00\r\n\xff\r\n", respReply{Kind: '$', Str: []byte("\x00\r\n\xff")}},
		{"empty bulk", "$0\r\n\r\n", respReply{Kind: '$', Str: []byte{}}},
		{"null bulk", "$-1\r\n", respReply{Kind: '$', Null: true}},
		{"big bulk", "$100000\r\n" + big + "\r\n", respReply{Kind: '$', Str: []byte(big)}},
		{"null array", "*-1\r\n", respReply{Kind: '*', Null: true}},
		{"empty array", "*0\r\n", respReply{Kind: '*', Array: []respReply{}}},
		{"scan reply", "*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n", respReply{Kind: '*', Array: []respReply{
			{Kind: '$', Str: []byte("0")},
			{Kind: '*', Array: []respReply{{Kind: '$', Str: []byte("a")}, {Kind: '$', Str: []byte("b")}}},
		}}},
		{"mixed", "*3\r\n:1\r\n-ERR x\r\n$-1\r\n", respReply{Kind: '*', Array: []respReply{
			{Kind: ':', Int: 1}, {Kind: '-', Str: []byte("ERR x")}, {Kind: '$', Null: true},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.in + "+NEXT\r\n"))
			got, err := readRESPReply(r)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			// Exactly one reply was consumed.
			next, err := readRESPReply(r)
			if err != nil || string(next.Str) != "NEXT" {
				t.Fatalf("next reply: %+v, %v", next, err)
			}
		})
	}
}

func TestReadRESPReplyMalformed(t *testing.T) {
	deep := strings.Repeat("*1\r\n", respMaxDepth+2) + ":1\r\n"
	for _, tc := range []struct{ name, in string }{
		{"empty input", ""},
		{"empty line", "\r\n"},
		{"no CRLF", "+OK"},
		{"LF only", "+OK\n"},
		{"stray CR", "+O\rK\r\n"},
		{"unknown type", "!5\r\nhello\r\n"},
		{"bad integer", ":12a\r\n"},
		{"plus integer", ":+1\r\n"},
		{"empty integer", ":\r\n"},
		{"overflow", ":99999999999999999999\r\n"},
		{"lone minus", ":-\r\n"},
		{"bulk short", "$5\r\nhel"},
		{"bulk no CRLF", "$5\r\nhelloXY"},
		{"bulk truncated CRLF", "$5\r\nhello\r"},
		{"bulk -2", "$-2\r\n"},
		{"bulk too big", "$999999999999\r\n"},
		{"array short", "*2\r\n:1\r\n"},
		{"array -2", "*-2\r\n"},
		{"array too big", "*99999999999\r\n"},
		{"too deep", deep},
		{"long line", "+" + strings.Repeat("a", respMaxLine+10) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := readRESPReply(bufio.NewReader(strings.NewReader(tc.in))); err == nil {
				t.Fatalf("accepted %q as %+v", tc.in, got)
			}
		})
	}
}

func TestAppendRESPCommand(t *testing.T) {
	got := appendRESPCommand(nil, []byte("SET"), []byte("k\r\n"), []byte{0, 1}, []byte{})
	want := "*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n\x00\x01\r\n$0\r\n\r\n"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// What we write, the parser reads back as an array of bulk strings.
	r, err := readRESPReply(bufio.NewReader(bytes.NewReader(got)))
	if err != nil || len(r.Array) != 4 || string(r.Array[1].Str) != "k\r\n" {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
}

// fakeRedis answers each command read on a loopback listener with the
// replies in order.
func fakeRedis(t *testing.T, replies ...string) (addr string, commands chan respReply) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	commands = make(chan respReply, 100)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for _, reply := range replies {
			cmd, err := readRESPReply(r)
			if err != nil {
				return
			}
			commands <- cmd
			if reply == "HANG" {
				<-done
				return
			}
			c.Write([]byte(reply))
		}
	}()
	return ln.Addr().String(), commands
}

func TestRESPConn(t *testing.T) {
	addr, commands := fakeRedis(t, "+OK\r\n", "-NOPERM no\r\n", ":1\r\n", "$1\r\nx\r\n")
	ctx := context.Background()
	c, err := dialRESP(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.do(ctx, "AUTH", "u", "p"); err != nil || string(r.Str) != "OK" {
		t.Fatalf("AUTH: %+v %v", r, err)
	}
	cmd := <-commands
	if len(cmd.Array) != 3 || string(cmd.Array[0].Str) != "AUTH" || string(cmd.Array[2].Str) != "p" {
		t.Fatalf("server got %+v", cmd)
	}
	_, err = c.do(ctx, "SELECT", "3")
	var re respError
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "NOPERM") {
		t.Fatalf("SELECT: %v", err)
	}
	// Pipelined: two commands, two replies in order.
	c.queue([]byte("PTTL"), []byte("k"))
	c.queue([]byte("DUMP"), []byte("k"))
	replies, err := c.flush(ctx)
	if err != nil || len(replies) != 2 || replies[0].Int != 1 || string(replies[1].Str) != "x" {
		t.Fatalf("pipeline: %+v %v", replies, err)
	}
}

func TestRESPConnCancel(t *testing.T) {
	addr, _ := fakeRedis(t, "HANG")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := dialRESP(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	started := time.Now()
	_, err = c.do(ctx, "PING")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if d := time.Since(started); d > 2*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

func TestRESPConnClosedByServer(t *testing.T) {
	addr, _ := fakeRedis(t) // accepts, reads nothing, closes
	c, err := dialRESP(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.do(context.Background(), "PING"); err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset")) {
		t.Fatalf("err %v", err)
	}
}
