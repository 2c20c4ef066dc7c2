package services

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// A dump as mysqldump (MariaDB 10.11.19) writes it, shortened.
const sampleDump = `/*M!999999\- enable the sandbox mode */ 
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: localhost    Database: shop_main_1a2b3c4d
-- ------------------------------------------------------
-- Server version	10.11.19-MariaDB-0+deb12u1

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
DROP TABLE IF EXISTS ` + "`items`" + `;
CREATE TABLE ` + "`items`" + ` (` + "`id`" + ` int(11) NOT NULL, ` + "`data`" + ` blob DEFAULT NULL) ENGINE=InnoDB;
INSERT INTO ` + "`items`" + ` VALUES (1,0x00FF0A),(2,'it\'s\0\n\r');
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed on 2026-11-25  9:54:45
`

func TestCheckMySQLDump(t *testing.T) {
	long := strings.Replace(sampleDump, "INSERT", "INSERT INTO x VALUES ('"+strings.Repeat("y", 300_000)+"');\nINSERT", 1)
	for _, tc := range []struct {
		name string
		in   string
		want string // "" = accepted
	}{
		{"mariadb", sampleDump, ""},
		{"without sandbox line", sampleDump[strings.Index(sampleDump, "\n")+1:], ""},
		{"mysql", strings.Replace(sampleDump[strings.Index(sampleDump, "\n")+1:], "-- MariaDB dump", "-- MySQL dump", 1), ""},
		{"CRLF", strings.ReplaceAll(sampleDump, "\n", "\r\n"), ""},
		{"no final newline", strings.TrimSuffix(sampleDump, "\n"), ""},
		{"long lines", long, ""},
		{"empty", "", "empty"},
		{"plain SQL", "DROP DATABASE mysql;\n-- Dump completed on x\n", "not a mysqldump file"},
		{"sandbox line only", "/*M!999999\\- enable the sandbox mode */ \n", "not a mysqldump file"},
		{"sandbox line, same line", "/*M!999999\\- enable the sandbox mode */ -- MariaDB dump\n-- Dump completed\n", "sandbox line"},
		{"gzip", "\x1f\x8b\x08\x00\x00\x00", "not a mysqldump file"},
		{"redis backup", "GRREDIS1\nK", "not a mysqldump file"},
		{"truncated", sampleDump[:len(sampleDump)/2], "truncated"},
		{"truncated in the last line", sampleDump[:len(sampleDump)-20], "truncated"},
		{"cut before the last line", sampleDump[:strings.LastIndex(sampleDump, "-- Dump")], "truncated"},
		{"NUL", strings.Replace(sampleDump, "VALUES", "VAL\x00UES", 1), "NUL byte"},
		{"NUL late", long[:len(long)-100] + "\x00" + long[len(long)-99:], "NUL byte"},
		{"trailing statement", sampleDump + "DROP TABLE items;\n", "truncated"},
		{"without date", strings.Replace(sampleDump, " on 2026-11-25  9:54:45", "", 1), ""},
		{"date cut short", strings.Replace(sampleDump, " on 2026-11-25  9:54:45", " on 2026-11-25  9:5", 1), "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mysqlService{}.CheckBackup(strings.NewReader(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				// Also when it arrives a byte at a time.
				if err := checkMySQLDump(iotest.OneByteReader(strings.NewReader(tc.in))); err != nil {
					t.Fatalf("refused one byte at a time: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckMySQLDumpReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader(sampleDump[:200]), iotest.ErrReader(boom))
	if err := checkMySQLDump(r); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
}

func TestMySQLSQL(t *testing.T) {
	c := Credentials{User: "shop_main_1a2b3c4d", Password: "0123456789abcdef0123456789abcdef"}
	prov := mysqlProvisionSQL(c)
	for _, want := range []string{
		"CREATE DATABASE IF NOT EXISTS `shop_main_1a2b3c4d`;",
		"CREATE USER IF NOT EXISTS 'shop_main_1a2b3c4d'@'%' IDENTIFIED BY '0123456789abcdef0123456789abcdef';",
		"ALTER USER 'shop_main_1a2b3c4d'@'%' IDENTIFIED BY '0123456789abcdef0123456789abcdef';",
		"GRANT ALL PRIVILEGES ON `shop_main_1a2b3c4d`.* TO 'shop_main_1a2b3c4d'@'%';",
	} {
		if !strings.Contains(prov, want) {
			t.Errorf("provision SQL lacks %q:\n%s", want, prov)
		}
	}
	clear := mysqlClearSQL(c)
	if i, j := strings.Index(clear, "DROP DATABASE IF EXISTS `shop_main_1a2b3c4d`;"), strings.Index(clear, "CREATE DATABASE `shop_main_1a2b3c4d`;"); i < 0 || j < i ||
		!strings.Contains(clear, "GRANT ALL PRIVILEGES ON `shop_main_1a2b3c4d`.*") || strings.Contains(clear, "DROP USER") {
		t.Errorf("clear SQL:\n%s", clear)
	}
	destroy := mysqlDestroySQL(c)
	if i, j := strings.Index(destroy, "DROP USER IF EXISTS 'shop_main_1a2b3c4d'@'%';"), strings.Index(destroy, "DROP DATABASE IF EXISTS `shop_main_1a2b3c4d`;"); i < 0 || j < i {
		t.Errorf("destroy SQL:\n%s", destroy)
	}
	if strings.Contains(destroy, c.Password) {
		t.Error("destroy SQL carries the password")
	}
}

// Every node-side method refuses credentials that could reach the
// server's own databases or accounts, before running anything.
func TestMySQLRefusesBadCredentials(t *testing.T) {
	ctx := context.Background()
	s := mysqlService{}
	for _, c := range []Credentials{
		{User: "mysql", Password: "0123456789abcdef"},
		{User: "root", Password: "0123456789abcdef"},
		{User: "information_schema", Password: "0123456789abcdef"},
		{User: "shop`; DROP DATABASE mysql; --", Password: "0123456789abcdef"},
		{User: "shop", Password: "x' OR '1'='1"},
	} {
		if _, err := s.Provision(ctx, Host{}, Instance{}, c); err == nil {
			t.Errorf("Provision accepted %q", c.User)
		}
		for name, f := range map[string]func() error{
			"Backup":  func() error { return s.Backup(ctx, Host{}, Instance{}, c, io.Discard) },
			"Restore": func() error { return s.Restore(ctx, Host{}, Instance{}, c, strings.NewReader(sampleDump)) },
			"Clear":   func() error { return s.Clear(ctx, Host{}, Instance{}, c) },
			"Destroy": func() error { return s.Destroy(ctx, Host{}, Instance{}, c) },
		} {
			if err := f(); err == nil {
				t.Errorf("%s accepted %q", name, c.User)
			}
		}
	}
}

func TestMySQLEnv(t *testing.T) {
	c := Credentials{User: "shop_main_1a2b3c4d", Password: "0123456789abcdef"}
	env := mysqlService{}.Env(Instance{App: "shop", Name: "main"}, c, "10.0.0.5", Host{})
	want := map[string]string{
		"CONFIG_MYSQL_DBNAME":     c.User,
		"CONFIG_MYSQL_USER":       c.User,
		"CONFIG_MYSQL_PASSWORD":   c.Password,
		"CONFIG_MYSQL_HOST":       "10.0.0.5",
		"CONFIG_MYSQL_PORT":       "3306",
		"CONFIG_MYSQL_SQLALCHEMY": "mysql://shop_main_1a2b3c4d:0123456789abcdef@10.0.0.5:3306/shop_main_1a2b3c4d",
	}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("got %v", env)
	}
}

func TestRedact(t *testing.T) {
	base := errors.New("mariadb: exit status 1: ALTER USER 'u'@'%' IDENTIFIED BY 'secret123'\nERROR 1396")
	err := redact(base, "secret123", "")
	if strings.Contains(err.Error(), "secret123") || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("redacted: %v", err)
	}
	if !errors.Is(err, base) {
		t.Fatal("redact lost the wrapped error")
	}
	if redact(nil, "x") != nil {
		t.Fatal("redact(nil) is not nil")
	}
	plain := errors.New("nothing to hide")
	if redact(plain, "secret") != plain {
		t.Fatal("an error without secrets was rewrapped")
	}
	ctxErr := redact(context.Canceled, "x")
	if !errors.Is(ctxErr, context.Canceled) {
		t.Fatal("context error lost")
	}
}

func TestRegistered(t *testing.T) {
	for _, name := range []string{"mysql", "redis"} {
		s, ok := Lookup(name)
		if !ok || s.Name() != name || s.Where() != OnServicesNode {
			t.Errorf("%s: %v %v", name, s, ok)
		}
	}
	if got := (mysqlService{}).Packages(); !reflect.DeepEqual(got, []string{"mariadb-server", "mariadb-client"}) {
		t.Errorf("mysql packages %v", got)
	}
	for _, tc := range []struct {
		svc      Service
		platform string
		want     string
	}{
		{mysqlService{}, "python", "python3-pymysql"}, {mysqlService{}, "php", "php-mysql"},
		{redisService{}, "python", "python3-redis"}, {redisService{}, "php", "php-redis"},
		{postgres{}, "python", "python3-psycopg2"}, {postgres{}, "php", "php-pgsql"},
	} {
		if got := tc.svc.ClientPackages(tc.platform); !reflect.DeepEqual(got, []string{tc.want}) {
			t.Errorf("%T client packages for %s: %v, want %s", tc.svc, tc.platform, got, tc.want)
		}
	}
}
