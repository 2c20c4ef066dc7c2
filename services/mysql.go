package services

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"
)

// mysqlService is service.mysql: one MariaDB server on the services node;
// each instance gets a database and a user of the same name (its
// Credentials.User), with every privilege on that database and none
// elsewhere.
//
// gitreceive talks to the server as root over the unix socket (Debian's
// root authenticates by unix_socket), with SQL on stdin, never in argv.
// A restore runs as the instance's own user, so a backup can only touch
// its own database.
type mysqlService struct{}

func init() { register(mysqlService{}) }

const (
	mysqlPort     = "3306"
	mysqlConfFile = "/etc/mysql/mariadb.conf.d/90-gitreceive.cnf"
	mysqlRunDir   = "/run/mysqld"

	mysqlStartTimeout = 30 * time.Second
	// mysqlLockWait bounds how long DROP DATABASE & co. wait for a lock an
	// app's open transaction holds, instead of MariaDB's default of a day.
	mysqlLockWait = 30
)

// mysqlConf listens where app nodes reach the server and on loopback,
// never on every interface (every account of an instance has a password),
// and skips reverse DNS of clients: accounts are 'user'@'%', and a node
// without DNS would stall every connect. MariaDB reads a comma-separated
// bind-address since 10.11.
func mysqlConf(h Host) string {
	return "# Managed by gitreceive (service.mysql).\n[mysqld]\nbind-address = " +
		strings.Join(bindAddrs(h), ",") + "\nskip-name-resolve\n"
}

// mysqlReserved are names an instance must never get: dropping them
// would take the server's own databases or accounts.
var mysqlReserved = map[string]bool{
	"mysql": true, "information_schema": true, "performance_schema": true,
	"sys": true, "root": true, "test": true,
}

func (mysqlService) Name() string       { return "mysql" }
func (mysqlService) Where() Where       { return OnServicesNode }
func (mysqlService) Packages() []string { return []string{"mariadb-server", "mariadb-client"} }
func (mysqlService) ClientPackages(platform string) []string {
	return clientFor(platform, "python3-pymysql", "php-mysql")
}

func checkMySQLCredentials(c Credentials) error {
	if err := c.Check(); err != nil {
		return err
	}
	if mysqlReserved[c.User] {
		return fmt.Errorf("mysql: %q is the server's own name, not an instance's", c.User)
	}
	return nil
}

// mysqlRoot runs sql as MariaDB's root over the unix socket and returns
// what the client printed (tab-separated, no column names).
func mysqlRoot(ctx context.Context, sql string) ([]byte, error) {
	return command{
		argv:  []string{"mariadb", "--protocol=socket", "--batch", "--skip-column-names"},
		stdin: strings.NewReader(sql),
	}.run(ctx)
}

// mysqlAccount is the instance's account; user is [a-z0-9_] (checked).
func mysqlAccount(user string) string { return "'" + user + "'@'%'" }

// mysqlProvisionSQL makes the database and user exist with this password
// and these privileges, whatever existed before.
func mysqlProvisionSQL(c Credentials) string {
	acct := mysqlAccount(c.User)
	return fmt.Sprintf("SET SESSION lock_wait_timeout = %d;\n", mysqlLockWait) +
		"CREATE DATABASE IF NOT EXISTS `" + c.User + "`;\n" +
		"CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY '" + c.Password + "';\n" +
		"ALTER USER " + acct + " IDENTIFIED BY '" + c.Password + "';\n" +
		"GRANT ALL PRIVILEGES ON `" + c.User + "`.* TO " + acct + ";\n"
}

// mysqlClearSQL empties the database: the instance's connections are
// closed first (an open transaction would block DROP DATABASE), then the
// database is made anew with its grant. The user stays (and is made if
// missing, with this password).
func mysqlClearSQL(c Credentials) string {
	acct := mysqlAccount(c.User)
	return fmt.Sprintf("SET SESSION lock_wait_timeout = %d;\n", mysqlLockWait) +
		"CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY '" + c.Password + "';\n" +
		"KILL CONNECTION USER " + acct + ";\n" +
		"DROP DATABASE IF EXISTS `" + c.User + "`;\n" +
		"CREATE DATABASE `" + c.User + "`;\n" +
		"GRANT ALL PRIVILEGES ON `" + c.User + "`.* TO " + acct + ";\n"
}

// mysqlDestroySQL removes user (first, so the app cannot log in again)
// and database.
func mysqlDestroySQL(c Credentials) string {
	acct := mysqlAccount(c.User)
	return fmt.Sprintf("SET SESSION lock_wait_timeout = %d;\n", mysqlLockWait) +
		"DROP USER IF EXISTS " + acct + ";\n" +
		"KILL CONNECTION USER " + acct + ";\n" +
		"DROP DATABASE IF EXISTS `" + c.User + "`;\n"
}

// mysqlPing is whether the server answers on its socket.
func mysqlPing(ctx context.Context) error {
	_, err := runArgv(ctx, "mariadb-admin", "--protocol=socket", "--connect-timeout=2", "ping")
	return err
}

func (s mysqlService) Install(ctx context.Context, h Host) error {
	if err := EnsurePackages(ctx, h.Output, s.Packages()); err != nil {
		return err
	}
	changed, err := writeIfChanged(mysqlConfFile, []byte(mysqlConf(h)), 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", mysqlConfFile, err)
	}
	if changed {
		fmt.Fprintf(h.Output, "mysql: configured %s\n", mysqlConfFile)
	}
	// Without systemd nothing makes the socket's directory (/run is a
	// fresh tmpfs at boot); the init script would, but only on start.
	if err := os.MkdirAll(mysqlRunDir, 0o755); err != nil {
		return err
	}
	if err := chownByName(mysqlRunDir, "mysql", 0); err != nil {
		return fmt.Errorf("chown %s: %w", mysqlRunDir, err)
	}
	running := mysqlPing(ctx) == nil
	switch {
	case running && !changed:
		return nil
	case running:
		fmt.Fprintln(h.Output, "mysql: restarting mariadb")
		err = startServer(ctx, "mariadb", true)
	default:
		fmt.Fprintln(h.Output, "mysql: starting mariadb")
		err = startServer(ctx, "mariadb", false)
	}
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, mysqlStartTimeout)
	defer cancel()
	for {
		err := mysqlPing(wctx)
		if err == nil {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("mariadb did not answer within %s: %w", mysqlStartTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s mysqlService) Provision(ctx context.Context, h Host, inst Instance, c Credentials) (string, error) {
	if err := checkMySQLCredentials(c); err != nil {
		return "", err
	}
	if _, err := mysqlRoot(ctx, mysqlProvisionSQL(c)); err != nil {
		return "", fmt.Errorf("mysql: provision %s: %w", c.User, redact(err, c.Password))
	}
	return "database " + c.User + " ready", nil
}

func (mysqlService) Env(inst Instance, c Credentials, host string, h Host) map[string]string {
	return map[string]string{
		"CONFIG_MYSQL_DBNAME":     c.User,
		"CONFIG_MYSQL_USER":       c.User,
		"CONFIG_MYSQL_PASSWORD":   c.Password,
		"CONFIG_MYSQL_HOST":       host,
		"CONFIG_MYSQL_PORT":       mysqlPort,
		"CONFIG_MYSQL_SQLALCHEMY": "mysql://" + c.User + ":" + c.Password + "@" + net.JoinHostPort(host, mysqlPort) + "/" + c.User,
	}
}

// Backup is mysqldump's SQL text of the database, without CREATE
// DATABASE/USE, so that it restores into whatever database it is fed to.
// BLOBs are hex, so the text holds no raw binary.
func (s mysqlService) Backup(ctx context.Context, h Host, inst Instance, c Credentials, w io.Writer) error {
	if err := checkMySQLCredentials(c); err != nil {
		return err
	}
	_, err := command{
		argv: []string{"mysqldump", "--protocol=socket", "--single-transaction", "--routines",
			"--triggers", "--events", "--hex-blob", c.User},
		stdout: w,
	}.run(ctx)
	if err != nil {
		return fmt.Errorf("mysql: backup %s: %w", c.User, err)
	}
	return nil
}

func (mysqlService) CheckBackup(r io.Reader) error {
	return checkMySQLDump(r)
}

// mysqldump's first lines and last comment. MariaDB since 10.5.25,
// 10.6.18, 10.11.8 starts its dumps with a "sandbox mode" line.
var (
	mysqlSandboxLine = []byte(`/*M!999999\- enable the sandbox mode */`)
	mysqlDumpHeaders = [][]byte{[]byte("-- MariaDB dump"), []byte("-- MySQL dump")}
	// "-- Dump completed on 2026-11-25  9:54:45", or without the date
	// (--skip-dump-date).
	mysqlDumpCompleted = regexp.MustCompile(`^-- Dump completed( on [0-9]{4}-[0-9]{2}-[0-9]{2} [ 0-9][0-9]:[0-9]{2}:[0-9]{2})?$`)
)

// checkMySQLDump reads all of r and accepts it only if it is mysqldump's
// text, complete: the header at the start, no NUL byte (mysqldump escapes
// them), and "-- Dump completed" as the last line, which a truncated dump
// lacks.
func checkMySQLDump(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(mysqlSandboxLine) + 2 + 64)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("mysql backup: %w", err)
	}
	if len(head) == 0 {
		return errors.New("mysql backup: empty")
	}
	rest := head
	if bytes.HasPrefix(rest, mysqlSandboxLine) {
		rest = bytes.TrimLeft(rest[len(mysqlSandboxLine):], " \r")
		if !bytes.HasPrefix(rest, []byte("\n")) {
			return errors.New("mysql backup: the sandbox line is not followed by a new line")
		}
		rest = rest[1:]
	}
	known := false
	for _, h := range mysqlDumpHeaders {
		known = known || bytes.HasPrefix(rest, h)
	}
	if !known {
		return errors.New(`mysql backup: not a mysqldump file (it does not start with "-- MariaDB dump" or "-- MySQL dump")`)
	}

	// The last line is all that is left to look at; keep a tail of the
	// stream, big enough for it.
	const tailSize = 4096
	tail := make([]byte, 0, 2*tailSize)
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := br.Read(buf)
		chunk := buf[:n]
		if i := bytes.IndexByte(chunk, 0); i >= 0 {
			return fmt.Errorf("mysql backup: NUL byte at offset %d: binary data, not mysqldump's text", off+int64(i))
		}
		off += int64(n)
		tail = append(tail, chunk...)
		if len(tail) > tailSize {
			tail = append(tail[:0], tail[len(tail)-tailSize:]...)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("mysql backup: %w", err)
		}
	}
	last := bytes.TrimRight(tail, " \t\r\n")
	if i := bytes.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	if !mysqlDumpCompleted.Match(last) {
		return errors.New(`mysql backup: truncated (the last line is not mysqldump's "-- Dump completed")`)
	}
	return nil
}

// Restore checks the dump in full first (spooling it to a temporary
// file), so that a broken one leaves the database alone; then it empties
// the database as Clear does and feeds the dump to the client as the
// instance's user, with client-side commands (\! and friends) and LOAD
// DATA LOCAL off: the dump cannot reach beyond the instance's database.
func (s mysqlService) Restore(ctx context.Context, h Host, inst Instance, c Credentials, r io.Reader) error {
	if err := checkMySQLCredentials(c); err != nil {
		return err
	}
	dir := ""
	if h.DataDir != "" {
		if err := os.MkdirAll(h.DataDir, 0o755); err != nil {
			return err
		}
		dir = h.DataDir
	}
	f, err := os.CreateTemp(dir, ".mysql-restore-*.sql")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := checkMySQLDump(io.TeeReader(r, f)); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.Clear(ctx, h, inst, c); err != nil {
		return err
	}
	_, err = command{
		argv: []string{"mariadb", "--no-defaults", "--protocol=socket", "--user=" + c.User,
			"--binary-mode", "--local-infile=0", "--batch", c.User},
		stdin: f,
		env:   []string{"MYSQL_PWD=" + c.Password},
	}.run(ctx)
	if err != nil {
		return fmt.Errorf("mysql: restore %s: %w", c.User, redact(err, c.Password))
	}
	return nil
}

func (s mysqlService) Clear(ctx context.Context, h Host, inst Instance, c Credentials) error {
	if err := checkMySQLCredentials(c); err != nil {
		return err
	}
	if _, err := mysqlRoot(ctx, mysqlClearSQL(c)); err != nil {
		return fmt.Errorf("mysql: clear %s: %w", c.User, redact(err, c.Password))
	}
	return nil
}

func (s mysqlService) Destroy(ctx context.Context, h Host, inst Instance, c Credentials) error {
	if err := checkMySQLCredentials(c); err != nil {
		return err
	}
	if _, err := mysqlRoot(ctx, mysqlDestroySQL(c)); err != nil {
		return fmt.Errorf("mysql: destroy %s: %w", c.User, redact(err, c.Password))
	}
	return nil
}
