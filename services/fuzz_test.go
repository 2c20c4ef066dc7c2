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
	// A small hash's listpack whose first entry claims 63 bytes past its
	// end, behind a valid DUMP trailer: only the server's sanitizing sees
	// it (tenant_node_test.go), the format must still read it.
	f.Add(writeRedisBackup(f, []redisRecord{{Key: []byte("app:hash"), PTTL: -1,
		Payload: dumpPayload("\x10\x13\x13\x00\x00\x00\x02\x00\xbfk9Qz\x05\x84v7Xw\x05\xff")}}))
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

// FuzzMySQLDump: the MariaDB restore's reader returns on any bytes, and
// what it accepts is mysqldump-shaped text: a known header, no NUL, and
// "-- Dump completed" as its last line. Seeds are the hostile dumps the
// node test restores (another database, grants, client commands).
func FuzzMySQLDump(f *testing.F) {
	head := "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n"
	tail := "-- Dump completed on 2026-12-04  7:45:00\n"
	for _, body := range []string{"", "USE `shop_main_1a2b3c4d`; DROP TABLE secrets;\n", "GRANT ALL ON *.* TO CURRENT_USER;\n",
		"\\! touch /tmp/escaped-shell\n", "LOAD DATA LOCAL INFILE '/etc/shadow' INTO TABLE leak;\n", "x\x00y\n"} {
		f.Add([]byte(head + body + tail))
	}
	f.Add([]byte(head))
	f.Add([]byte("-- MySQL dump\n" + tail + "trailing\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkMySQLDump(bytes.NewReader(data)) != nil {
			return
		}
		if bytes.IndexByte(data, 0) >= 0 {
			t.Fatal("accepted a dump with a NUL byte")
		}
		if !bytes.Contains(data[:min(len(data), 200)], []byte("-- MariaDB dump")) && !bytes.Contains(data[:min(len(data), 200)], []byte("-- MySQL dump")) {
			t.Fatal("accepted a dump without mysqldump's header")
		}
		last := bytes.TrimRight(data, " \t\r\n")
		if i := bytes.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if !bytes.HasPrefix(last, []byte("-- Dump completed")) {
			t.Fatalf("accepted a dump whose last line is %q", last)
		}
	})
}

// FuzzPostgresCheckBackup: the PostgreSQL restore's first check returns on
// any bytes and accepts only pg_dump custom-format archives of a version
// pg_restore reads. (What the archive's SQL may do is bounded by the
// instance's role, not by reading it: postgres_restore_node_test.go.)
func FuzzPostgresCheckBackup(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("PGDMP"))
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01\x01"))
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01\x01\x00\x00\x00\x00SEARCHPATH\x00RESET ROLE; ALTER ROLE x SUPERUSER;"))
	f.Add([]byte("PGDMP\x01\x0b\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if (postgres{}).CheckBackup(bytes.NewReader(data)) != nil {
			return
		}
		if !bytes.HasPrefix(data, pgDumpMagic) || data[5] != 1 || data[6] < 12 {
			t.Fatalf("accepted % x", data[:min(len(data), 8)])
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
