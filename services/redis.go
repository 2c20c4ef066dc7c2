package services

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// redisService is service.redis: one Redis server on the services node;
// each instance gets its own logical database (Credentials.Database,
// allocated by the receiver) and its own ACL user, which may SELECT only
// that database.
//
// Redis 7 ACLs cannot restrict keys per database, so the user's rules deny
// every command that reaches across databases (SELECT of another number,
// MOVE, SWAPDB, COPY, MIGRATE, FLUSHALL) or the server's global state
// (@admin, @dangerous, FUNCTION, SCRIPT FLUSH/KILL). Two things stay shared
// and an app should know it: database 0, where every connection starts
// before its SELECT (no instance owns it, and backups ignore it). Pub/Sub
// channels, which Redis does not scope by database, are scoped by name: an
// instance may use only channels starting with its CONFIG_REDIS_CHANNEL_PREFIX.
type redisService struct{}

func init() { register(redisService{}) }

const (
	redisPort      = "6379"
	redisAddr      = "127.0.0.1:" + redisPort
	redisAdminUser = "gitreceive-admin"

	redisConfDir      = "/etc/redis"
	redisMainConf     = redisConfDir + "/redis.conf"
	redisFragmentConf = redisConfDir + "/gitreceive.conf"
	redisACLFile      = redisConfDir + "/gitreceive-users.acl"
	redisAdminPWFile  = "/etc/gitreceive/redis-admin-password"
	redisRunDir       = "/run/redis"

	redisStartTimeout = 30 * time.Second
)

// redisFragment is the configuration gitreceive adds to redis.conf: app
// nodes reach the server over the network, at the node's inventory
// address, and nothing else but loopback (-::1: if the node has it); the
// default user is off (see the ACL file), so every connection needs a user
// and password; protected mode stays on as a second lock should that ever
// change. sanitize-dump-payload makes the server check every RESTOREd
// value in full: a restore replays a tenant's backup, untrusted, and a
// malformed value would otherwise crash the server for every tenant at
// its first read.
func redisFragment(h Host) string {
	return fmt.Sprintf(`# Managed by gitreceive (service.redis); included from %s.
bind %s -::1
protected-mode yes
port %s
databases %d
aclfile %s
sanitize-dump-payload yes
`, redisMainConf, strings.Join(bindAddrs(h), " "), redisPort, MaxRedisDatabase+1, redisACLFile)
}

func (redisService) Name() string       { return "redis" }
func (redisService) Where() Where       { return OnServicesNode }
func (redisService) Packages() []string { return []string{"redis-server"} }
func (redisService) ClientPackages(platform string) []string {
	return clientFor(platform, "python3-redis", "php-redis")
}

// redisUserRules are the ACL SETUSER rules of an instance's user: every
// everyday command in its own database, nothing that reaches another
// database or changes the server. "reset" first, so that provisioning
// again converges on exactly these rules.
func redisUserRules(c Credentials) []string {
	return []string{
		"reset", "on", ">" + c.Password,
		"~*", "resetchannels", "&" + redisChannelPrefix(c) + "*",
		"+@all", "-@dangerous", "-@admin",
		// @dangerous holds everyday commands too; these are harmless
		// within the user's own database.
		"+flushdb", "+keys", "+info", "+sort", "+sort_ro",
		// Only its own database.
		"-select", "+select|" + strconv.Itoa(c.Database),
		"-move", "-swapdb", "-copy", "-migrate",
		// Functions and the script cache are server-wide.
		"-function", "-script|flush", "-script|kill",
	}
}

// checkRedisCredentials adds the redis-only rules to Credentials.Check:
// a database of its own (0 is everybody's landing place) and a user name
// that is not Redis' own.
func checkRedisCredentials(c Credentials) error {
	if err := c.Check(); err != nil {
		return err
	}
	if c.Database < 1 || c.Database > MaxRedisDatabase {
		return fmt.Errorf("redis database number %d is not in 1..%d", c.Database, MaxRedisDatabase)
	}
	if c.User == "default" {
		return errors.New(`redis user "default" is Redis' own`)
	}
	return nil
}

// redisAdminPassword reads the admin's password, creating it on first use.
func redisAdminPassword(create bool) (string, error) {
	data, err := os.ReadFile(redisAdminPWFile)
	if err == nil {
		pw := strings.TrimSpace(string(data))
		if !password.MatchString(pw) {
			return "", fmt.Errorf("%s does not hold a hex password; remove it to make a new one (and run install)", redisAdminPWFile)
		}
		return pw, nil
	}
	if !errors.Is(err, os.ErrNotExist) || !create {
		return "", fmt.Errorf("redis admin password: %w (run install first)", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b)
	if err := os.MkdirAll("/etc/gitreceive", 0o755); err != nil {
		return "", err
	}
	if _, err := writeIfChanged(redisAdminPWFile, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", redisAdminPWFile, err)
	}
	return pw, nil
}

// redisFixedACLLines are the ACL file's lines for the default user (off)
// and the admin, written as Redis' ACL SAVE writes them, so that a saved
// file compares equal and Install leaves it alone.
func redisFixedACLLines(adminPW string) map[string]string {
	sum := sha256.Sum256([]byte(adminPW))
	return map[string]string{
		"default":      "user default off resetchannels -@all",
		redisAdminUser: "user " + redisAdminUser + " on #" + hex.EncodeToString(sum[:]) + " ~* &* +@all",
	}
}

// mergeACLFile replaces the default and admin users' lines of an ACL file
// by fixed (appending those missing) and keeps every other user's line.
// It reports whether anything differs.
func mergeACLFile(old []byte, fixed map[string]string) ([]byte, bool) {
	var out []string
	seen := map[string]bool{}
	changed := false
	for _, line := range strings.Split(string(old), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		f := strings.Fields(trimmed)
		if len(f) >= 2 && f[0] == "user" {
			if want, ok := fixed[f[1]]; ok {
				if seen[f[1]] {
					changed = true // a duplicate: Redis refuses the file
					continue
				}
				seen[f[1]] = true
				if trimmed != want {
					changed = true
				}
				out = append(out, want)
				continue
			}
		}
		out = append(out, trimmed)
	}
	for _, name := range []string{"default", redisAdminUser} {
		if !seen[name] {
			out = append(out, fixed[name])
			changed = true
		}
	}
	return []byte(strings.Join(out, "\n") + "\n"), changed
}

// ensureRedisInclude appends redis.conf's include of our fragment once.
func ensureRedisInclude() (bool, error) {
	data, err := os.ReadFile(redisMainConf)
	if err != nil {
		return false, err
	}
	include := "include " + redisFragmentConf
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == include {
			return false, nil
		}
	}
	f, err := os.OpenFile(redisMainConf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return false, err
	}
	add := "\n# Added by gitreceive (service.redis).\n" + include + "\n"
	if len(data) > 0 && data[len(data)-1] != '\n' {
		add = "\n" + add
	}
	if _, err := f.WriteString(add); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}

// chownByName gives path to the named user (and its primary group, or gid
// group when it is not -1).
func chownByName(path, name string, gid int) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	if gid == -1 {
		gid, _ = strconv.Atoi(u.Gid)
	}
	return os.Chown(path, uid, gid)
}

// groupIDByName is the id of a group.
func groupIDByName(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

func (s redisService) Install(ctx context.Context, h Host) error {
	if err := EnsurePackages(ctx, h.Output, s.Packages()); err != nil {
		return err
	}
	if err := checkRedisVersion(ctx); err != nil {
		return err
	}
	adminPW, err := redisAdminPassword(true)
	if err != nil {
		return err
	}
	redisGID, err := groupIDByName("redis")
	if err != nil {
		return fmt.Errorf("redis group: %w", err)
	}

	old, err := os.ReadFile(redisACLFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	aclData, aclChanged := mergeACLFile(old, redisFixedACLLines(adminPW))
	if aclChanged {
		if _, err := writeIfChanged(redisACLFile, aclData, 0o640); err != nil {
			return fmt.Errorf("write %s: %w", redisACLFile, err)
		}
	}
	// Redis rewrites the file on ACL SAVE (in /etc/redis, which it owns).
	if err := chownByName(redisACLFile, "redis", redisGID); err != nil {
		return fmt.Errorf("chown %s: %w", redisACLFile, err)
	}
	confChanged, err := writeIfChanged(redisFragmentConf, []byte(redisFragment(h)), 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", redisFragmentConf, err)
	}
	if err := os.Chown(redisFragmentConf, 0, redisGID); err != nil {
		return err
	}
	included, err := ensureRedisInclude()
	if err != nil {
		return fmt.Errorf("include %s in %s: %w", redisFragmentConf, redisMainConf, err)
	}
	changed := aclChanged || confChanged || included
	if changed {
		fmt.Fprintf(h.Output, "redis: configured (%s, %s)\n", redisFragmentConf, redisACLFile)
	}

	if err := os.MkdirAll(redisRunDir, 0o755); err != nil {
		return err
	}
	if err := chownByName(redisRunDir, "redis", -1); err != nil {
		return fmt.Errorf("chown %s: %w", redisRunDir, err)
	}

	pingErr := redisPing(ctx, adminPW)
	switch {
	case pingErr == nil && !changed:
		return nil
	case !changed && strings.HasPrefix(pingErr.Error(), "redis: LOADING"):
		// Reading its data set after a start: wait, don't restart.
		return waitRedis(ctx, adminPW)
	case isConnRefused(pingErr):
		fmt.Fprintln(h.Output, "redis: starting redis-server")
		err = startServer(ctx, "redis-server", false)
	default:
		// Running, but on an older configuration (or refusing the admin).
		fmt.Fprintln(h.Output, "redis: restarting redis-server")
		err = startServer(ctx, "redis-server", true)
	}
	if err != nil {
		return err
	}
	return waitRedis(ctx, adminPW)
}

var redisVersionRE = regexp.MustCompile(`\bv=([0-9]+)\.([0-9]+)`)

// checkRedisVersion refuses servers older than 7.0: the instance users'
// rules name commands (FUNCTION, SORT_RO) and channel rules (&*) that
// Redis 6 does not know, and it would refuse the ACL file.
func checkRedisVersion(ctx context.Context) error {
	out, err := runArgv(ctx, "redis-server", "--version")
	if err != nil {
		return err
	}
	m := redisVersionRE.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("redis-server --version said %q: no version", bytes.TrimSpace(out))
	}
	if major, _ := strconv.Atoi(string(m[1])); major < 7 {
		return fmt.Errorf("redis-server %s.%s is too old: the redis service needs Redis 7 or later (Debian 12, Ubuntu 24.04)", m[1], m[2])
	}
	return nil
}

func isConnRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// redisPing authenticates as the admin and pings.
func redisPing(ctx context.Context, adminPW string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dialRESP(ctx, redisAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.do(ctx, "AUTH", redisAdminUser, adminPW); err != nil {
		return err
	}
	_, err = c.do(ctx, "PING")
	return err
}

// waitRedis waits (bounded) until the server answers the admin; while it
// loads its data set it answers -LOADING.
func waitRedis(ctx context.Context, adminPW string) error {
	ctx, cancel := context.WithTimeout(ctx, redisStartTimeout)
	defer cancel()
	for {
		err := redisPing(ctx, adminPW)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis did not answer within %s: %w", redisStartTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// redisAdmin is an authenticated admin connection, with database db
// selected (db 0: none).
func redisAdmin(ctx context.Context, db int) (*respConn, error) {
	pw, err := redisAdminPassword(false)
	if err != nil {
		return nil, err
	}
	c, err := dialRESP(ctx, redisAddr)
	if err != nil {
		return nil, fmt.Errorf("redis: %w (is it installed and running?)", err)
	}
	if _, err := c.do(ctx, "AUTH", redisAdminUser, pw); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis admin: %w", err)
	}
	if db > 0 {
		if _, err := c.do(ctx, "SELECT", strconv.Itoa(db)); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (s redisService) Provision(ctx context.Context, h Host, inst Instance, c Credentials) (string, error) {
	if err := checkRedisCredentials(c); err != nil {
		return "", err
	}
	conn, err := redisAdmin(ctx, 0)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	args := append([]string{"ACL", "SETUSER", c.User}, redisUserRules(c)...)
	if _, err := conn.do(ctx, args...); err != nil {
		return "", fmt.Errorf("redis ACL SETUSER %s: %w", c.User, redact(err, c.Password))
	}
	if _, err := conn.do(ctx, "ACL", "SAVE"); err != nil {
		return "", fmt.Errorf("redis ACL SAVE: %w", err)
	}
	return fmt.Sprintf("database %d for user %s ready", c.Database, c.User), nil
}

// redisChannelPrefix starts every Pub/Sub channel the instance may use.
func redisChannelPrefix(c Credentials) string { return c.User + ":" }

func (redisService) Env(inst Instance, c Credentials, host string, h Host) map[string]string {
	db := strconv.Itoa(c.Database)
	return map[string]string{
		"CONFIG_REDIS_CHANNEL_PREFIX": redisChannelPrefix(c),
		"CONFIG_REDIS_URL":            "redis://" + c.User + ":" + c.Password + "@" + net.JoinHostPort(host, redisPort) + "/" + db,
		"CONFIG_REDIS_HOST":           host,
		"CONFIG_REDIS_PORT":           redisPort,
		"CONFIG_REDIS_DB":             db,
		"CONFIG_REDIS_USER":           c.User,
		"CONFIG_REDIS_PASSWORD":       c.Password,
	}
}

// redisScanCount is SCAN's COUNT hint: keys per round trip.
const redisScanCount = "1000"

func (s redisService) Backup(ctx context.Context, h Host, inst Instance, c Credentials, w io.Writer) error {
	if err := checkRedisCredentials(c); err != nil {
		return err
	}
	conn, err := redisAdmin(ctx, c.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	bw := newRedisBackupWriter(w)
	seen := map[string]bool{} // SCAN may return a key more than once
	cursor := "0"
	for {
		reply, err := conn.do(ctx, "SCAN", cursor, "COUNT", redisScanCount)
		if err != nil {
			return fmt.Errorf("redis SCAN: %w", err)
		}
		if reply.Kind != '*' || len(reply.Array) != 2 || reply.Array[0].Kind != '$' || reply.Array[1].Kind != '*' {
			return errors.New("redis SCAN: unexpected reply")
		}
		cursor = string(reply.Array[0].Str)
		var keys [][]byte
		for _, k := range reply.Array[1].Array {
			if k.Kind != '$' || k.Null || seen[string(k.Str)] {
				continue
			}
			seen[string(k.Str)] = true
			keys = append(keys, k.Str)
		}
		// DUMP and PTTL of the batch in one round trip.
		for _, k := range keys {
			conn.queue([]byte("DUMP"), k)
			conn.queue([]byte("PTTL"), k)
		}
		replies, err := conn.flush(ctx)
		if err != nil {
			return err
		}
		for i, k := range keys {
			dump, ttl := replies[2*i], replies[2*i+1]
			if err := dump.err(); err != nil {
				return fmt.Errorf("redis DUMP %q: %w", truncateKey(k), err)
			}
			if err := ttl.err(); err != nil {
				return fmt.Errorf("redis PTTL %q: %w", truncateKey(k), err)
			}
			if dump.Null || ttl.Int == -2 {
				continue // expired or deleted since SCAN saw it
			}
			if err := bw.add(redisRecord{Key: k, PTTL: ttl.Int, Payload: dump.Str}); err != nil {
				return fmt.Errorf("redis backup of key %q: %w", truncateKey(k), err)
			}
		}
		if cursor == "0" {
			break
		}
	}
	return bw.close()
}

func (redisService) CheckBackup(r io.Reader) error {
	return readRedisBackup(r, nil)
}

// redisRestoreBatch is how many RESTOREs go in one round trip.
const redisRestoreBatch = 256

func (s redisService) Restore(ctx context.Context, h Host, inst Instance, c Credentials, r io.Reader) error {
	if err := checkRedisCredentials(c); err != nil {
		return err
	}
	// Read and check everything before flushing anything: a broken
	// backup must leave the data as it was. The data set lives in
	// memory anyway, so its backup may too.
	var recs []redisRecord
	if err := readRedisBackup(r, func(rec redisRecord) error {
		recs = append(recs, rec)
		return nil
	}); err != nil {
		return err
	}
	conn, err := redisAdmin(ctx, c.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := probeRestore(ctx, conn, recs); err != nil {
		return err
	}
	if _, err := conn.do(ctx, "FLUSHDB"); err != nil {
		return fmt.Errorf("redis FLUSHDB: %w", err)
	}
	for start := 0; start < len(recs); start += redisRestoreBatch {
		batch := recs[start:min(start+redisRestoreBatch, len(recs))]
		for _, rec := range batch {
			ttl := rec.PTTL
			switch {
			case ttl == -1:
				ttl = 0 // RESTORE's "no expiry"
			case ttl == 0:
				ttl = 1 // was expiring this very millisecond
			}
			conn.queue([]byte("RESTORE"), rec.Key, []byte(strconv.FormatInt(ttl, 10)), rec.Payload, []byte("REPLACE"))
		}
		replies, err := conn.flush(ctx)
		if err != nil {
			return err
		}
		for i, rep := range replies {
			if err := rep.err(); err != nil {
				return fmt.Errorf("redis RESTORE %q: %w", truncateKey(batch[i].Key), err)
			}
		}
	}
	fmt.Fprintf(h.Output, "redis: restored %d keys into database %d\n", len(recs), c.Database)
	return nil
}

// probeRestore has the server check every payload before anything is
// flushed: each is RESTOREd under a throw-away key of the instance's
// database (about to be flushed anyway) and deleted at once. The server
// runs with sanitize-dump-payload yes, so a malformed value (a crafted
// listpack behind a valid DUMP trailer) is refused here, naming its key,
// instead of crashing the server at its first read; a payload from a
// newer Redis (a newer RDB version) is refused here too, not half way
// through the restore.
func probeRestore(ctx context.Context, conn *respConn, recs []redisRecord) error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	probe := []byte("gitreceive:restore-probe:" + hex.EncodeToString(b))
	for start := 0; start < len(recs); start += redisRestoreBatch {
		batch := recs[start:min(start+redisRestoreBatch, len(recs))]
		for _, rec := range batch {
			conn.queue([]byte("RESTORE"), probe, []byte("60000"), rec.Payload, []byte("REPLACE"))
			conn.queue([]byte("DEL"), probe)
		}
		replies, err := conn.flush(ctx)
		if err != nil {
			return err
		}
		for i, rec := range batch {
			if err := replies[2*i].err(); err != nil {
				version := binary.LittleEndian.Uint16(rec.Payload[len(rec.Payload)-10:])
				return fmt.Errorf("redis refuses the value of key %q (RDB version %d): %w; nothing was changed", truncateKey(rec.Key), version, err)
			}
			if err := replies[2*i+1].err(); err != nil {
				return fmt.Errorf("redis DEL: %w", err)
			}
		}
	}
	return nil
}

func (s redisService) Clear(ctx context.Context, h Host, inst Instance, c Credentials) error {
	if err := checkRedisCredentials(c); err != nil {
		return err
	}
	conn, err := redisAdmin(ctx, c.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.do(ctx, "FLUSHDB"); err != nil {
		return fmt.Errorf("redis FLUSHDB: %w", err)
	}
	return nil
}

func (s redisService) Destroy(ctx context.Context, h Host, inst Instance, c Credentials) error {
	if err := checkRedisCredentials(c); err != nil {
		return err
	}
	conn, err := redisAdmin(ctx, c.Database)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The user first: deleting it also disconnects its clients, so
	// nothing writes after the flush.
	if _, err := conn.do(ctx, "ACL", "DELUSER", c.User); err != nil {
		return fmt.Errorf("redis ACL DELUSER %s: %w", c.User, err)
	}
	if _, err := conn.do(ctx, "ACL", "SAVE"); err != nil {
		return fmt.Errorf("redis ACL SAVE: %w", err)
	}
	if _, err := conn.do(ctx, "FLUSHDB"); err != nil {
		return fmt.Errorf("redis FLUSHDB: %w", err)
	}
	return nil
}
