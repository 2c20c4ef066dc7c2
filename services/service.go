package services

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// Instance is whose service it is: one instance of one app. Every instance
// has its own databases (Silver Lining shared them across locations, which
// made staging writes hit production data).
type Instance struct {
	App  string // app name: [a-z][a-z0-9-]*
	Name string // instance name, as the receiver and the agent call it
}

func (i Instance) String() string { return i.App + "/" + i.Name }

var notResourceChar = regexp.MustCompile(`[^a-z0-9]+`)

// Resource is the instance's name for databases, users and directories
// on the services node: [a-z0-9_] only (safe unquoted in SQL and in
// paths), at most 48 bytes (PostgreSQL allows 63, MariaDB's database names
// 64), and never the same for two instances: a hash of APP/INSTANCE ends it.
func (i Instance) Resource() string {
	readable := strings.Trim(notResourceChar.ReplaceAllString(strings.ToLower(i.App+"_"+i.Name), "_"), "_")
	if len(readable) > 38 {
		readable = strings.TrimRight(readable[:38], "_")
	}
	h := sha256.Sum256([]byte(i.App + "\x00" + i.Name))
	return readable + "_" + hex.EncodeToString(h[:4])
}

// UnixUser is the name of the instance's own Unix user and group on every
// node (DESIGN.md decision 9): "gr-", up to 12 characters of the app, up
// to 6 of the instance, and 8 hex digits of a hash of both, so it is
// readable in `ps`, within useradd's 32 characters and Debian's NAME_REGEX,
// and never the same for two instances.
func (i Instance) UnixUser() string {
	part := func(s string, n int) string {
		s = notResourceChar.ReplaceAllString(strings.ToLower(s), "")
		return s[:min(len(s), n)]
	}
	h := sha256.Sum256([]byte(i.App + "\x00" + i.Name))
	name := "gr-" + part(i.App, 12)
	if inst := part(i.Name, 6); inst != "" {
		name += "-" + inst
	}
	return name + "-" + hex.EncodeToString(h[:4])
}

// Credentials are what the receiver generates once per instance and
// service, keeps (0600) and hands to the services node on every call; the
// app gets them only through its env file.
type Credentials struct {
	User     string `json:"user"`               // database and user name: the instance's Resource
	Password string `json:"password"`           // random, hex: safe in SQL literals and URLs
	Database int    `json:"database,omitempty"` // redis: the instance's logical database
}

// NewCredentials makes credentials for inst: its resource name and a
// fresh 128-bit password.
func NewCredentials(inst Instance) (Credentials, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return Credentials{}, err
	}
	return Credentials{User: inst.Resource(), Password: hex.EncodeToString(b)}, nil
}

var (
	resourceName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	password     = regexp.MustCompile(`^[0-9a-f]{16,128}$`)
)

// Check refuses credentials that could not have come from NewCredentials:
// they are written into SQL and config files, so only the expected
// characters pass.
func (c Credentials) Check() error {
	if !resourceName.MatchString(c.User) {
		return fmt.Errorf("service user %q is not [a-z0-9_]", c.User)
	}
	if !password.MatchString(c.Password) {
		return fmt.Errorf("service password is not hex")
	}
	if c.Database < 0 || c.Database > MaxRedisDatabase {
		return fmt.Errorf("database number %d is out of range", c.Database)
	}
	return nil
}

// MaxRedisDatabase is the highest logical database number: the redis
// service configures databases = MaxRedisDatabase+1, one per instance.
const MaxRedisDatabase = 1023

// Where is where a service runs.
type Where int

const (
	// OnServicesNode: one server for every app, on the node marked
	// --services (a database server).
	OnServicesNode Where = iota
	// OnAppNodes: on every node that serves the app (a directory), so
	// the data is per node.
	OnAppNodes
)

// Host is the node a service's node-side methods act on.
type Host struct {
	DataDir string // persistent data: DataDir/files/APP/INSTANCE, ...
	AppUser string // every instance runs as this user, when UserOf is nil (tests)
	// UserOf names the user an instance runs as, made if need be: it owns
	// the instance's directories.
	UserOf     func(Instance) (string, error)
	NginxGroup string // nginx reads writable_root through this group
	// Listen are the addresses app nodes reach this node at (its
	// inventory address, resolved): database servers bind there and to
	// loopback only. Empty: loopback only (a single box).
	Listen []string
	Output io.Writer
}

// Service is one kind of service.NAME. The node-side methods run as root
// on the node the service lives on and are idempotent; Env and CheckBackup
// run on the receiver.
type Service interface {
	Name() string
	Where() Where
	// Packages are the Debian packages the service needs where it runs;
	// ClientPackages what apps of a platform ("python", "php") need on
	// app nodes to talk to it: the Python module, or PHP's extension.
	Packages() []string
	ClientPackages(platform string) []string
	// Install makes the server ready: packages, configuration (listening
	// where app nodes reach it, passwords required), running.
	Install(ctx context.Context, h Host) error
	// Provision makes sure the instance's database/user exists with these
	// credentials; it says what is ready ("database myapp_1a2b3c4d").
	Provision(ctx context.Context, h Host, inst Instance, c Credentials) (string, error)
	// Env is what the app is told: host is where app nodes reach the
	// services node.
	Env(inst Instance, c Credentials, host string, h Host) map[string]string
	// Backup writes the instance's data; Restore replaces it with what
	// Backup wrote, which CheckBackup has accepted first.
	Backup(ctx context.Context, h Host, inst Instance, c Credentials, w io.Writer) error
	CheckBackup(r io.Reader) error
	Restore(ctx context.Context, h Host, inst Instance, c Credentials, r io.Reader) error
	// Clear empties the instance's data, keeping it provisioned; Destroy
	// removes it with its user.
	Clear(ctx context.Context, h Host, inst Instance, c Credentials) error
	Destroy(ctx context.Context, h Host, inst Instance, c Credentials) error
}

var registry = map[string]Service{}

// register adds a service; each service's file calls it from init.
func register(s Service) {
	if _, dup := registry[s.Name()]; dup {
		panic("services: " + s.Name() + " registered twice")
	}
	registry[s.Name()] = s
}

// Lookup is the service called name.
func Lookup(name string) (Service, bool) {
	s, ok := registry[name]
	return s, ok
}

// Names are the services there are, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// clientFor picks a service's client package for an app's platform; an
// unknown platform gets the Python one, as app.ini's default platform is.
func clientFor(platform, python, php string) []string {
	if platform == "php" {
		return []string{php}
	}
	return []string{python}
}
