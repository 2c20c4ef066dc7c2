package nodes

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/ini.v1"

	"github.com/gitreceive/gitreceive/internal/atomicfile"
	"github.com/gitreceive/gitreceive/names"
)

// Node is one server of the inventory.
type Node struct {
	Name     string
	User     string
	Host     string
	Port     int
	Services bool // runs the services (databases) of the apps
	Local    bool // the receiver host itself, reached without SSH
}

// LocalName is the node the receiver host is when no nodes are configured.
const LocalName = "local"

// LocalNode is the receiver host as a node: its agent runs as a child
// process of the receiver, speaking the same protocol as over SSH, so a
// single-box install needs no sshd. It also runs the services.
var LocalNode = Node{Name: LocalName, Services: true, Local: true}

// Addr is HOST:PORT for dialing.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// String is [user@]host[:port] as the operator wrote it.
func (n Node) String() string {
	if n.Local {
		return "this host"
	}
	s := n.User + "@" + n.Host
	if strings.Contains(n.Host, ":") {
		s = n.User + "@[" + n.Host + "]"
	}
	if n.Port != 22 {
		s += ":" + strconv.Itoa(n.Port)
	}
	return s
}

var (
	userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

// ValidName checks a node name.
func ValidName(name string) error {
	if !names.IsNode(name) {
		return fmt.Errorf("invalid node name %q: use lowercase letters, digits and dashes, starting with a letter", name)
	}
	if name == LocalName {
		return fmt.Errorf("%q is the receiver host itself, the node deploys go to while no other node is added; choose another name", name)
	}
	return nil
}

// ParseAddress parses [user@]HOST[:PORT] (IPv6 as [addr]:port); the user
// defaults to root and the port to 22.
func ParseAddress(s string) (user, host string, port int, err error) {
	user, rest := "root", s
	if u, r, ok := strings.Cut(s, "@"); ok {
		user, rest = u, r
	}
	if !userName.MatchString(user) {
		return "", "", 0, fmt.Errorf("invalid user %q in %q", user, s)
	}
	host, port = rest, 22
	if h, p, err := net.SplitHostPort(rest); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", 0, fmt.Errorf("invalid port %q in %q: use 1 to 65535", p, s)
		}
		host, port = h, n
	} else if strings.Count(rest, ":") == 1 {
		return "", "", 0, fmt.Errorf("invalid address %q: %v", s, err)
	}
	if ip := net.ParseIP(host); ip == nil && !names.IsHost(strings.ToLower(host)) {
		return "", "", 0, fmt.Errorf("invalid host %q in %q: give a hostname or an IP address", host, s)
	}
	return user, host, port, nil
}

// Inventory is the node list kept in DATA/nodes.ini, one section a node:
//
//	[web1]
//	address  = root@10.0.0.5:22
//	services = true
type Inventory struct{ path string }

// OpenInventory returns the inventory of a data dir; no I/O.
func OpenInventory(dataDir string) *Inventory {
	return &Inventory{path: filepath.Join(dataDir, "nodes.ini")}
}

// List returns the nodes sorted by name.
func (inv *Inventory) List() ([]Node, error) {
	f, err := inv.load()
	if err != nil {
		return nil, err
	}
	var nodes []Node
	for _, sec := range f.Sections() {
		if sec.Name() == ini.DefaultSection {
			continue
		}
		if err := ValidName(sec.Name()); err != nil {
			return nil, fmt.Errorf("%s: %w", inv.path, err)
		}
		user, host, port, err := ParseAddress(sec.Key("address").String())
		if err != nil {
			return nil, fmt.Errorf("%s: [%s] address: %w", inv.path, sec.Name(), err)
		}
		nodes = append(nodes, Node{Name: sec.Name(), User: user, Host: host, Port: port, Services: sec.Key("services").MustBool(false)})
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

// Targets returns the nodes deploys go to: the inventory, or the local
// node while the inventory is empty.
func (inv *Inventory) Targets() ([]Node, error) {
	nodes, err := inv.List()
	if err != nil || len(nodes) > 0 {
		return nodes, err
	}
	return []Node{LocalNode}, nil
}

// Get returns the target called name (the local node only while it is one).
func (inv *Inventory) Get(name string) (Node, error) {
	nodes, err := inv.Targets()
	if err != nil {
		return Node{}, err
	}
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("no node %q; see `gitreceive nodes list`", name)
}

func (inv *Inventory) load() (*ini.File, error) {
	f, err := ini.Load(inv.path)
	if errors.Is(err, fs.ErrNotExist) {
		return ini.Empty(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", inv.path, err)
	}
	return f, nil
}

// update applies change under an exclusive lock and writes the file
// atomically, so the CLI and the daemon cannot lose each other's edits.
func (inv *Inventory) update(change func(f *ini.File) error) error {
	lock, err := os.OpenFile(inv.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	f, err := inv.load()
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		return err
	}
	return atomicfile.Write(inv.path, buf.Bytes(), 0o600)
}

// add records n; the name must be new.
func (inv *Inventory) add(n Node) error {
	return inv.update(func(f *ini.File) error {
		if _, err := f.GetSection(n.Name); err == nil {
			return fmt.Errorf("a node named %q already exists; remove it first or choose another name", n.Name)
		}
		sec, err := f.NewSection(n.Name)
		if err != nil {
			return err
		}
		sec.Key("address").SetValue(n.String())
		if n.Services {
			sec.Key("services").SetValue("true")
		}
		return nil
	})
}

// remove deletes the node called name.
func (inv *Inventory) remove(name string) error {
	return inv.update(func(f *ini.File) error {
		if _, err := f.GetSection(name); err != nil {
			return fmt.Errorf("no node %q; see `gitreceive nodes list`", name)
		}
		f.DeleteSection(name)
		return nil
	})
}
