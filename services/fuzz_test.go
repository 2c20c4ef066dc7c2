package services

import (
	"bufio"
	"bytes"
	"strconv"
	"testing"
)

// FuzzRedisBackup: CheckBackup of the redis service on any bytes returns
// (an error or nil) without panicking or allocating without bound, and
// what it accepts reads back to the same records when written again.
func FuzzRedisBackup(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(redisBackupMagic))
	f.Add(writeRedisBackup(f, nil))
	f.Add(writeRedisBackup(f, []redisRecord{
		{Key: []byte("k"), PTTL: -1, Payload: dumpPayload("\x00\x01v")},
		{Key: []byte("t"), PTTL: 5000, Payload: []byte("\x00\x05hello\n\x00cr\xdfve4 \n")},
	}))
	f.Add([]byte(redisBackupMagic + "K\xff\xff\xff\xff"))
	f.Add([]byte(redisBackupMagic + "K\x00\x00\x00\x01k\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs []redisRecord
		err := readRedisBackup(bytes.NewReader(data), func(r redisRecord) error {
			recs = append(recs, r)
			return nil
		})
		if cerr := (redisService{}).CheckBackup(bytes.NewReader(data)); (cerr == nil) != (err == nil) {
			t.Fatalf("CheckBackup %v, readRedisBackup %v", cerr, err)
		}
		if err != nil {
			return
		}
		// Accepted: the format is canonical, so writing the records
		// again gives the same bytes.
		var buf bytes.Buffer
		bw := newRedisBackupWriter(&buf)
		for _, r := range recs {
			if err := bw.add(r); err != nil {
				t.Fatalf("accepted record cannot be written: %v", err)
			}
		}
		if err := bw.close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("rewritten backup differs")
		}
	})
}

// FuzzRESPReply: the reply parser returns or fails on any bytes, and what
// it parses it parses again the same after re-encoding.
func FuzzRESPReply(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR x\r\n", ":42\r\n", ":-1\r\n", "$5\r\nhello\r\n", "$-1\r\n", "$0\r\n\r\n",
		"*-1\r\n", "*0\r\n", "*2\r\n$1\r\n0\r\n*1\r\n$1\r\na\r\n", "*1\r\n*1\r\n*1\r\n:1\r\n",
		"$999999999\r\n", "*99999999\r\n", "$3\r\nab", "+OK",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for range 16 { // a few replies in a row, as on a pipelined connection
			reply, err := readRESPReply(r)
			if err != nil {
				return
			}
			again, err := readRESPReply(bufio.NewReader(bytes.NewReader(encodeRESPReply(nil, reply))))
			if err != nil {
				t.Fatalf("re-encoded reply does not parse: %v", err)
			}
			if !bytes.Equal(encodeRESPReply(nil, again), encodeRESPReply(nil, reply)) {
				t.Fatalf("reply changed on a round trip")
			}
		}
	})
}

// encodeRESPReply writes a reply as a server would (test only).
func encodeRESPReply(b []byte, r respReply) []byte {
	b = append(b, r.Kind)
	switch {
	case r.Kind == '+' || r.Kind == '-':
		b = append(b, r.Str...)
	case r.Kind == ':':
		b = append(b, []byte(itoa64(r.Int))...)
	case r.Null:
		b = append(b, "-1"...)
	case r.Kind == '$':
		b = append(b, []byte(itoa64(int64(len(r.Str))))...)
		b = append(b, "\r\n"...)
		b = append(b, r.Str...)
	case r.Kind == '*':
		b = append(b, []byte(itoa64(int64(len(r.Array))))...)
		b = append(b, "\r\n"...)
		for _, e := range r.Array {
			b = encodeRESPReply(b, e)
		}
		return b
	}
	return append(b, "\r\n"...)
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
