package services

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// dumpPayload makes a DUMP-shaped payload: body, RDB version 10, CRC-64.
func dumpPayload(body string) []byte { return dumpPayloadVersion([]byte(body), 10) }

func dumpPayloadVersion(body []byte, version uint16) []byte {
	p := binary.LittleEndian.AppendUint16(append([]byte{}, body...), version)
	return binary.LittleEndian.AppendUint64(p, redisCRC64(p))
}

func TestRedisCRC64(t *testing.T) {
	// Redis' own test vector (src/crc64.c).
	if got := redisCRC64([]byte("123456789")); got != 0xe9c6d914c4b8d9ca {
		t.Fatalf("crc64(123456789) = %x", got)
	}
	// Real DUMPs from Redis 7.0.15: SET k hello; RPUSH l a b.
	for _, real := range []string{
		"\x00\x05hello\n\x00cr\xdfve4 \n",
		"\x12\x01\x02\r\r\x00\x00\x00\x02\x00\x81a\x02\x81b\x02\xff\n\x00h\xeb\n\x89\x13A\xbb\xb1",
	} {
		if err := checkDumpPayload([]byte(real)); err != nil {
			t.Errorf("%q: %v", real, err)
		}
	}
	if err := checkDumpPayload(dumpPayload("\x00\x05hello")); err != nil {
		t.Fatal(err)
	}
	if err := checkDumpPayload(flipByte(dumpPayload("\x00\x05hello"), 2)); err == nil {
		t.Fatal("a damaged payload passed")
	}
}

func writeRedisBackup(t testing.TB, recs []redisRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := newRedisBackupWriter(&buf)
	for _, r := range recs {
		if err := bw.add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRedisBackupRoundTrip(t *testing.T) {
	for _, recs := range [][]redisRecord{
		nil,
		{{Key: []byte("k"), PTTL: -1, Payload: dumpPayload("\x00\x01v")}},
		{
			{Key: []byte{}, PTTL: 0, Payload: dumpPayload("")},
			{Key: []byte("binary\x00\r\n\xff"), PTTL: 3_600_000, Payload: dumpPayload(strings.Repeat("\x00", 70_000))},
			{Key: bytes.Repeat([]byte("k"), 100_000), PTTL: 1<<62 - 1, Payload: dumpPayload("x")},
		},
	} {
		data := writeRedisBackup(t, recs)
		if !bytes.HasPrefix(data, []byte(redisBackupMagic)) {
			t.Fatalf("no magic: %q", data[:10])
		}
		if err := (redisService{}).CheckBackup(bytes.NewReader(data)); err != nil {
			t.Fatalf("CheckBackup: %v", err)
		}
		var got []redisRecord
		if err := readRedisBackup(bytes.NewReader(data), func(r redisRecord) error {
			got = append(got, r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(recs) || (len(recs) > 0 && !reflect.DeepEqual(got, recs)) {
			t.Fatalf("read back %d records, wrote %d (or they differ)", len(got), len(recs))
		}
	}
}

func TestRedisBackupMalformed(t *testing.T) {
	good := writeRedisBackup(t, []redisRecord{
		{Key: []byte("a"), PTTL: -1, Payload: dumpPayload("\x00\x01x")},
		{Key: []byte("b"), PTTL: 5000, Payload: dumpPayload("\x00\x01y")},
	})
	// withCRC fixes the end record's checksum after an edit, so that the
	// structural checks, not the checksum, have to catch it.
	withCRC := func(b []byte) []byte {
		b = append([]byte{}, b...)
		binary.BigEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
		return b
	}
	recordStart := len(redisBackupMagic)
	keyLenAt := recordStart + 1
	pttlAt := keyLenAt + 4 + 1
	payloadLenAt := pttlAt + 8
	set32 := func(at int, v uint32) []byte {
		b := append([]byte{}, good...)
		binary.BigEndian.PutUint32(b[at:], v)
		return withCRC(b)
	}
	set64 := func(at int, v uint64) []byte {
		b := append([]byte{}, good...)
		binary.BigEndian.PutUint64(b[at:], v)
		return withCRC(b)
	}
	count := len(good) - 4 - 8
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "bad header"},
		{"mysql dump", []byte("-- MariaDB dump 10.19\n"), "bad header"},
		{"magic only", []byte(redisBackupMagic), "truncated"},
		{"wrong version", append([]byte("GRREDIS2\n"), good[len(redisBackupMagic):]...), "bad header"},
		{"truncated in key", good[:keyLenAt+5], "truncated"},
		{"truncated in payload", good[:payloadLenAt+6], "truncated"},
		{"no end record", good[:len(good)-13], "truncated"},
		{"no checksum", good[:len(good)-4], "truncated"},
		{"half checksum", good[:len(good)-2], "truncated"},
		{"trailing byte", append(append([]byte{}, good...), 0), "trailing data"},
		{"trailing backup", append(append([]byte{}, good...), good...), "trailing data"},
		{"bad tag", withCRC(append(append([]byte{}, good[:recordStart]...), append([]byte{'X'}, good[recordStart+1:]...)...)), "bad record tag"},
		{"flipped key byte", flipByte(good, keyLenAt+4), "checksum"},
		{"flipped payload byte", flipByte(good, payloadLenAt+4+1), "payload checksum"},
		{"payload crc fixed up", withCRC(flipByte(good, payloadLenAt+4+1)), "payload checksum"},
		{"pttl -2", set64(pttlAt, ^uint64(1)), "bad PTTL"},
		{"huge key length", set32(keyLenAt, 1<<31), "over Redis' limit"},
		{"key length past end", set32(keyLenAt, 1<<20), "truncated"},
		{"short payload", set32(payloadLenAt, 3), "too short"},
		{"count too high", set64(count, 3), "counts 3 keys"},
		{"count too low", set64(count, 1), "counts 1 keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (redisService{}).CheckBackup(bytes.NewReader(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// A read error is reported as such, not as a malformed backup.
func TestRedisBackupReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	err := readRedisBackup(io.MultiReader(bytes.NewReader([]byte(redisBackupMagic)), &failingReader{boom}), nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestRedisUserRules(t *testing.T) {
	c := Credentials{User: "shop_main_1a2b3c4d", Password: "0123456789abcdef0123456789abcdef", Database: 42}
	rules := redisUserRules(c)
	if rules[0] != "reset" {
		t.Errorf("rules do not start with reset: %v", rules)
	}
	for _, want := range []string{"on", ">" + c.Password, "-@dangerous", "-@admin", "-select", "+select|42", "-move", "-swapdb", "-copy", "-migrate", "+flushdb"} {
		if !slices.Contains(rules, want) {
			t.Errorf("rules lack %q: %v", want, rules)
		}
	}
	// +select|N must come after -select, or -select takes it back.
	if slices.Index(rules, "+select|42") < slices.Index(rules, "-select") {
		t.Errorf("+select|42 before -select: %v", rules)
	}
	for _, r := range rules {
		if strings.ContainsAny(r, " \r\n") {
			t.Errorf("rule %q has white space", r)
		}
	}
}

func TestCheckRedisCredentials(t *testing.T) {
	good := Credentials{User: "shop_main_1a2b3c4d", Password: "0123456789abcdef", Database: 1}
	if err := checkRedisCredentials(good); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Credentials{
		"database 0":    {User: good.User, Password: good.Password},
		"database 1024": {User: good.User, Password: good.Password, Database: 1024},
		"default user":  {User: "default", Password: good.Password, Database: 1},
		"bad password":  {User: good.User, Password: "nothex!", Database: 1},
		"bad user":      {User: "a b", Password: good.Password, Database: 1},
	} {
		if err := checkRedisCredentials(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMergeACLFile(t *testing.T) {
	fixed := redisFixedACLLines("00ff")
	canonical := fixed["default"] + "\n" + fixed[redisAdminUser] + "\n"
	user := "user shop_main_1a2b3c4d on #abcd ~* &* +@all -select +select|7"
	for _, tc := range []struct {
		name, old, want string
		changed         bool
	}{
		{"new file", "", canonical, true},
		{"as saved", canonical, canonical, false},
		{"as saved with users", canonical + user + "\n", canonical + user + "\n", false},
		{"users first", user + "\n" + canonical, user + "\n" + canonical, false},
		{"old admin password", fixed["default"] + "\nuser " + redisAdminUser + " on #0000 ~* &* +@all\n" + user + "\n", canonical + user + "\n", true},
		{"default on", "user default on nopass ~* &* +@all\n" + user + "\n", fixed["default"] + "\n" + user + "\n" + fixed[redisAdminUser] + "\n", true},
		{"duplicate admin", canonical + fixed[redisAdminUser] + "\n", canonical, true},
		{"blank lines dropped, not a change", "\n" + canonical + "\n\n", canonical, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := mergeACLFile([]byte(tc.old), fixed)
			if string(got) != tc.want || changed != tc.changed {
				t.Fatalf("got (changed %v)\n%s\nwant (changed %v)\n%s", changed, got, tc.changed, tc.want)
			}
		})
	}
	// The admin line carries the SHA-256 of the password, as ACL SAVE writes it.
	if !strings.Contains(fixed[redisAdminUser], " #8909cde2f411a84e86e7a39c8a3916b7cda6a9d977778030b6f6a491401400bc ") {
		t.Errorf("admin line %q", fixed[redisAdminUser])
	}
}

func TestRedisEnv(t *testing.T) {
	c := Credentials{User: "shop_main_1a2b3c4d", Password: "0123456789abcdef", Database: 9}
	env := redisService{}.Env(Instance{App: "shop", Name: "main"}, c, "10.0.0.5", Host{})
	want := map[string]string{
		"CONFIG_REDIS_URL":      "redis://shop_main_1a2b3c4d:0123456789abcdef@10.0.0.5:6379/9",
		"CONFIG_REDIS_HOST":     "10.0.0.5",
		"CONFIG_REDIS_PORT":     "6379",
		"CONFIG_REDIS_DB":       "9",
		"CONFIG_REDIS_USER":     c.User,
		"CONFIG_REDIS_PASSWORD": c.Password,
		// Channels are not scoped by database, so by name.
		"CONFIG_REDIS_CHANNEL_PREFIX": "shop_main_1a2b3c4d:",
	}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("got %v", env)
	}
	if got := (redisService{}).Env(Instance{}, c, "fd00::5", Host{})["CONFIG_REDIS_URL"]; !strings.Contains(got, "@[fd00::5]:6379/") {
		t.Errorf("IPv6 URL %q", got)
	}
}

func TestRedisFragment(t *testing.T) {
	frag := redisFragment(Host{Listen: []string{"10.0.0.5"}})
	for _, want := range []string{"\nbind 127.0.0.1 10.0.0.5 -::1\n", "\nprotected-mode yes\n", "\ndatabases 1024\n",
		"\naclfile " + redisACLFile + "\n", "\nsanitize-dump-payload yes\n"} {
		if !strings.Contains(frag, want) {
			t.Errorf("fragment lacks %q:\n%s", want, frag)
		}
	}
	if strings.Contains(frag, "\nuser ") {
		t.Error("user lines in the config conflict with the aclfile")
	}
}

// flipByte is b with its i-th byte changed: a corrupted copy (the node tests use it too).
func flipByte(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x40
	return c
}
