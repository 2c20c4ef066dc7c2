package services

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PostgresPort is where app nodes reach PostgreSQL; Install pins the
// cluster to it.
const PostgresPort = 5432

// postgres is service.postgresql, and service.postgis: the same with the
// PostGIS extension in every database.
type postgres struct{ postgis bool }

func init() {
	register(postgres{})
	register(postgres{postgis: true})
}

func (p postgres) Name() string {
	if p.postgis {
		return "postgis"
	}
	return "postgresql"
}

func (postgres) Where() Where { return OnServicesNode }

// Packages is the server; for postgis, Install adds the PostGIS package
// of the PostgreSQL version it finds (postgresql-15-postgis-3 on Debian 12).
func (postgres) Packages() []string { return []string{"postgresql"} }

func (postgres) ClientPackages(platform string) []string {
	return clientFor(platform, "python3-psycopg2", "php-pgsql")
}

// pgCluster is one line of pg_lsclusters.
type pgCluster struct {
	version, name string
	online        bool
}

// cluster is the node's first PostgreSQL cluster (Debian's package makes
// VERSION/main).
func cluster(ctx context.Context) (pgCluster, error) {
	out, err := runArgv(ctx, "pg_lsclusters", "--no-header")
	if err != nil {
		return pgCluster{}, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			return pgCluster{version: f[0], name: f[1], online: strings.HasPrefix(f[3], "online")}, nil
		}
	}
	return pgCluster{}, errors.New("no PostgreSQL cluster on this node; create one with pg_createcluster")
}

// pgConf makes the cluster listen where app nodes reach it (and on
// loopback), never on every interface; pgHBA lets each instance's user
// reach only the database of its own name, and only with its password
// (never trust across the network).
func pgConf(h Host) string {
	return "# Written by gitreceive: app nodes connect over the network, at these addresses only.\n" +
		"listen_addresses = '" + strings.Join(bindAddrs(h), ",") + "'\nport = 5432\npassword_encryption = scram-sha-256\n"
}

const (
	pgHBAMarker = "# gitreceive: each app instance reaches its own database, with its password"
	pgHBA       = pgHBAMarker + "\nhost sameuser all 0.0.0.0/0 scram-sha-256\nhost sameuser all ::/0 scram-sha-256\n"
)

func (p postgres) Install(ctx context.Context, h Host) error {
	if err := EnsurePackages(ctx, h.Output, p.Packages()); err != nil {
		return err
	}
	c, err := cluster(ctx)
	if err != nil {
		return err
	}
	if p.postgis {
		if err := EnsurePackages(ctx, h.Output, []string{"postgresql-" + c.version + "-postgis-3"}); err != nil {
			return err
		}
	}
	etc := filepath.Join("/etc/postgresql", c.version, c.name)
	changed, err := writeIfChanged(filepath.Join(etc, "conf.d", "gitreceive.conf"), []byte(pgConf(h)), 0o644)
	if err != nil {
		return err
	}
	hbaPath := filepath.Join(etc, "pg_hba.conf")
	hba, err := os.ReadFile(hbaPath)
	if err != nil {
		return err
	}
	if !bytes.Contains(hba, []byte(pgHBAMarker)) {
		if len(hba) > 0 && hba[len(hba)-1] != '\n' {
			hba = append(hba, '\n')
		}
		if _, err := writeIfChanged(hbaPath, append(hba, pgHBA...), 0o640); err != nil {
			return err
		}
		changed = true
	}
	if err := ensureRunDir("/run/postgresql", "postgres", 0o2775); err != nil {
		return err
	}
	switch {
	case !c.online:
		_, err = runArgv(ctx, "pg_ctlcluster", c.version, c.name, "start")
	case changed:
		_, err = runArgv(ctx, "pg_ctlcluster", c.version, c.name, "restart")
	}
	if err != nil {
		return fmt.Errorf("starting PostgreSQL %s/%s: %w", c.version, c.name, err)
	}
	return waitFor(ctx, "PostgreSQL", func() error {
		_, err := psql(ctx, "postgres", "SELECT 1")
		return err
	})
}

// psql runs sql as the postgres superuser in database db; the SQL goes on
// stdin, so no password is ever in a command line.
func psql(ctx context.Context, db, sql string) ([]byte, error) {
	return command{
		argv:  []string{"runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db},
		stdin: strings.NewReader(sql),
	}.run(ctx)
}

// createDatabase makes the instance's database, owned by its user, which
// no other role may connect to.
func (p postgres) createDatabase(ctx context.Context, c Credentials) error {
	if _, err := psql(ctx, "postgres", fmt.Sprintf(
		`SELECT 'CREATE DATABASE "%[1]s" OWNER "%[1]s"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '%[1]s')\gexec
REVOKE ALL ON DATABASE "%[1]s" FROM PUBLIC;
`, c.User)); err != nil {
		return err
	}
	if p.postgis {
		if _, err := psql(ctx, c.User, "CREATE EXTENSION IF NOT EXISTS postgis;\n"); err != nil {
			return err
		}
	}
	return nil
}

func (p postgres) Provision(ctx context.Context, h Host, inst Instance, c Credentials) (string, error) {
	if err := c.Check(); err != nil {
		return "", err
	}
	if _, err := psql(ctx, "postgres", fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN CREATE ROLE "%[1]s"; END IF;
END $$;
ALTER ROLE "%[1]s" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '%[2]s';
`, c.User, c.Password)); err != nil {
		// psql echoes a failing statement, password and all.
		return "", redact(err, c.Password)
	}
	if err := p.createDatabase(ctx, c); err != nil {
		return "", err
	}
	return "database " + c.User + " ready", nil
}

func (p postgres) Env(inst Instance, c Credentials, host string, h Host) map[string]string {
	port := strconv.Itoa(PostgresPort)
	url := fmt.Sprintf("postgresql://%s:%s@%s/%s", c.User, c.Password, hostPort(host, port), c.User)
	return map[string]string{
		"CONFIG_PG_DBNAME":     c.User,
		"CONFIG_PG_USER":       c.User,
		"CONFIG_PG_PASSWORD":   c.Password,
		"CONFIG_PG_HOST":       host,
		"CONFIG_PG_PORT":       port,
		"CONFIG_PG_SQLALCHEMY": url,
		"DATABASE_URL":         url,
	}
}

// Backup is pg_dump's custom format, which pg_restore reads.
func (postgres) Backup(ctx context.Context, h Host, inst Instance, c Credentials, w io.Writer) error {
	if err := c.Check(); err != nil {
		return err
	}
	_, err := command{argv: []string{"runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "-d", c.User}, stdout: w}.run(ctx)
	return err
}

// pgDumpMagic starts every pg_dump custom-format archive.
var pgDumpMagic = []byte("PGDMP")

func (postgres) CheckBackup(r io.Reader) error {
	br := bufio.NewReader(r)
	head, err := br.Peek(len(pgDumpMagic) + 3)
	if err != nil || !bytes.HasPrefix(head, pgDumpMagic) {
		return errors.New("not a pg_dump custom-format archive (made by pg_dump -Fc)")
	}
	// The version bytes: major, minor, revision of the archive format.
	if head[5] != 1 || head[6] < 12 {
		return fmt.Errorf("pg_dump archive format %d.%d is not one this PostgreSQL reads", head[5], head[6])
	}
	_, err = io.Copy(io.Discard, br)
	return err
}

// Restore replaces the database with the archive's contents. The archive
// is untrusted: SQL in any of its entries runs, so what it may do is
// bounded by who runs it, not by reading it. pg_restore connects as the
// instance's own role, with its password over TCP (never peer, never the
// superuser), into the instance's own database: a RESET ROLE inside the
// archive finds no other role to return to, ALTER ROLE ... SUPERUSER, COPY
// ... PROGRAM and untrusted extensions are refused to that role, and other
// databases are closed to it. Nothing is owned or granted as in the
// archive (--no-owner --no-privileges): the role owns what it restores.
//
// It restores into a fresh database and swaps: the instance's database is
// renamed aside (connections closed and refused first), a new one made
// (PostGIS enabled by the superuser beforehand for postgis, so the dump
// need not and cannot), the archive restored in one transaction, and only
// then the old one dropped. Any failure drops the new database and renames
// the old one back, unchanged. One transaction in the old database could
// not replace it whole: pg_restore --clean drops only what the archive
// names, so tables made after the backup would stay.
func (p postgres) Restore(ctx context.Context, h Host, inst Instance, c Credentials, r io.Reader) error {
	if err := c.Check(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "gitreceive-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dump := filepath.Join(tmp, "dump")
	if err := CopyToFile(dump, r); err != nil {
		return err
	}
	if err := checkBackupFile(p, dump); err != nil {
		return err
	}
	// The archive's table of contents, read by pg_restore as nobody: a
	// parser of untrusted input runs with no rights.
	list, err := pgRestore(ctx, dump, nil, "-l")
	if err != nil {
		return fmt.Errorf("postgres backup: pg_restore cannot read it: %w; nothing was changed", err)
	}
	aside := pgAsideName(c)
	if err := pgRecoverAside(ctx, c); err != nil {
		return err
	}
	if _, err := psql(ctx, "postgres", fmt.Sprintf(`ALTER DATABASE "%[1]s" WITH ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%[1]s';
ALTER DATABASE "%[1]s" RENAME TO "%[2]s";
`, c.User, aside)); err != nil {
		psql(ctx, "postgres", fmt.Sprintf(`ALTER DATABASE "%s" WITH ALLOW_CONNECTIONS true;`+"\n", c.User))
		return fmt.Errorf("postgres: setting the database aside for the restore: %w; nothing was changed", err)
	}
	if err := p.restoreFresh(ctx, tmp, dump, list, c); err != nil {
		if _, rerr := psql(ctx, "postgres", fmt.Sprintf(`DROP DATABASE IF EXISTS "%[1]s" WITH (FORCE);
ALTER DATABASE "%[2]s" RENAME TO "%[1]s";
ALTER DATABASE "%[1]s" WITH ALLOW_CONNECTIONS true;
`, c.User, aside)); rerr != nil {
			return fmt.Errorf("postgres restore refused: %w; and putting the old database back failed: %v (it is %s on the services node; run restore again or tell the operator)", err, rerr, aside)
		}
		return fmt.Errorf("postgres restore refused: %w; the database is as it was", err)
	}
	if _, err := psql(ctx, "postgres", fmt.Sprintf(`COMMENT ON DATABASE "%s" IS '%s';
DROP DATABASE IF EXISTS "%s" WITH (FORCE);
`, c.User, pgRestoredMark, aside)); err != nil {
		return fmt.Errorf("postgres: dropping the database as it was before the restore: %w", err)
	}
	return nil
}

// pgAsideName is where the instance's database waits while a restore
// runs: [a-z0-9_], at most 48+6 bytes, under PostgreSQL's 63.
func pgAsideName(c Credentials) string { return c.User + "_prev" }

// pgRestoredMark is the comment a restore puts on the new database once
// the archive is in, before it drops the old one: what tells a finished
// restore from one killed half way.
const pgRestoredMark = "gitreceive: restore complete"

// pgRecoverAside mends what a restore killed half way left: a database
// set aside holds the data as it was before that restore. If the
// database in the instance's place has the mark, that restore had
// finished and the old one goes; else the new one may be half restored
// and goes, and the old one comes back.
func pgRecoverAside(ctx context.Context, c Credentials) error {
	aside := pgAsideName(c)
	_, err := psql(ctx, "postgres", fmt.Sprintf(`SELECT format('DROP DATABASE %%I WITH (FORCE)', '%[2]s') WHERE EXISTS (SELECT FROM pg_database WHERE datname = '%[2]s') AND (SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '%[1]s') = '%[3]s'\gexec
SELECT format('DROP DATABASE IF EXISTS %%I WITH (FORCE)', '%[1]s') WHERE EXISTS (SELECT FROM pg_database WHERE datname = '%[2]s')\gexec
SELECT format('ALTER DATABASE %%I RENAME TO %%I', '%[2]s', '%[1]s') WHERE EXISTS (SELECT FROM pg_database WHERE datname = '%[2]s')\gexec
ALTER DATABASE "%[1]s" WITH ALLOW_CONNECTIONS true;
`, c.User, aside, pgRestoredMark))
	if err != nil {
		return fmt.Errorf("postgres: mending an interrupted restore of %s: %w", c.User, err)
	}
	return nil
}

// restoreFresh makes the instance's database anew and restores the
// archive into it as the instance's role, in one transaction.
func (p postgres) restoreFresh(ctx context.Context, tmp, dump string, list []byte, c Credentials) error {
	if err := p.createDatabase(ctx, c); err != nil {
		return err
	}
	// Rows of tables that belong to extensions (PostGIS's spatial_ref_sys)
	// are left as the extension made them: the role may not write there.
	out, err := psql(ctx, c.User, `SELECT n.nspname || ' ' || c.relname FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e';`)
	if err != nil {
		return err
	}
	skip := map[string]bool{}
	for _, t := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		skip["TABLE DATA "+t+" "] = true
	}
	var keep bytes.Buffer
	for _, line := range strings.SplitAfter(string(list), "\n") {
		if !skipListLine(line, skip) {
			keep.WriteString(line)
		}
	}
	// pg_restore runs as nobody: the list must be readable by it (it names
	// tables, nothing secret); the dump reaches it on stdin.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	listPath := filepath.Join(tmp, "list")
	if err := os.WriteFile(listPath, keep.Bytes(), 0o644); err != nil {
		return err
	}
	_, err = pgRestore(ctx, dump, &c, "--no-owner", "--no-privileges", "--no-comments",
		"--single-transaction", "--exit-on-error", "-L", listPath, "-d", c.User)
	return err
}

// skipListLine is whether a line of pg_restore -l restores the data of a
// table in skip ("TABLE DATA SCHEMA NAME ").
func skipListLine(line string, skip map[string]bool) bool {
	i := strings.Index(line, "TABLE DATA ")
	if i < 0 || strings.HasPrefix(line, ";") {
		return false
	}
	for prefix := range skip {
		if strings.HasPrefix(line[i:], prefix) {
			return true
		}
	}
	return false
}

// pgRestore runs pg_restore ARGS as nobody with the dump on stdin; with
// c, connected as c's role over TCP to loopback with its password (in the
// environment, never in argv), so the server grants it exactly the
// instance's rights.
func pgRestore(ctx context.Context, dump string, c *Credentials, args ...string) ([]byte, error) {
	f, err := os.Open(dump)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := command{argv: append([]string{"runuser", "-u", "nobody", "--", "pg_restore"}, args...), stdin: f,
		env: []string{"PGPASSFILE=/dev/null", "PGSERVICEFILE=/dev/null", "PGSYSCONFDIR=/nonexistent"}}
	if c != nil {
		cmd.argv = append(cmd.argv, "--no-password", "-h", "127.0.0.1", "-p", strconv.Itoa(PostgresPort), "-U", c.User)
		cmd.env = append(cmd.env, "PGPASSWORD="+c.Password, "PGCONNECT_TIMEOUT=10")
	}
	out, err := cmd.run(ctx)
	if c != nil {
		err = redact(err, c.Password)
	}
	return out, err
}

// checkBackupFile runs s's CheckBackup on a spooled dump.
func checkBackupFile(s Service, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.CheckBackup(f); err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	return nil
}

func (p postgres) Clear(ctx context.Context, h Host, inst Instance, c Credentials) error {
	if err := c.Check(); err != nil {
		return err
	}
	if _, err := psql(ctx, "postgres", fmt.Sprintf(`DROP DATABASE IF EXISTS "%s" WITH (FORCE);`+"\n", c.User)); err != nil {
		return err
	}
	return p.createDatabase(ctx, c)
}

func (postgres) Destroy(ctx context.Context, h Host, inst Instance, c Credentials) error {
	if err := c.Check(); err != nil {
		return err
	}
	// With the database a restore killed half way set aside, if any: it
	// holds the instance's data too.
	_, err := psql(ctx, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS \"%[1]s\" WITH (FORCE);\nDROP DATABASE IF EXISTS \"%[2]s\" WITH (FORCE);\nDROP ROLE IF EXISTS \"%[1]s\";\n", c.User, pgAsideName(c)))
	return err
}

// hostPort is host:port, with an IPv6 host in brackets.
func hostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// ensureRunDir makes a server's /run directory, which a node without
// systemd's tmpfiles does not have after a boot.
func ensureRunDir(dir, owner string, mode os.FileMode) error {
	u, err := user.Lookup(owner)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// waitFor polls ready until it succeeds, at most 30 s.
func waitFor(ctx context.Context, what string, ready func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not answering: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
