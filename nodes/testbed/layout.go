package testbed

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
)

// Options describe one test bed. Prefix and Subnet are parameters so that
// several beds (for example two test packages run in parallel) can coexist.
type Options struct {
	// Prefix names everything the bed creates: namespaces PREFIX-N, host
	// veths PREFIX-N, bridge PREFIX-br. 1-10 characters of [a-z0-9] so that
	// every interface name stays within the kernel's 15 characters.
	Prefix string
	// Subnet is an IPv4 prefix inside 10.77.0.0/16, e.g. "10.77.3.0/24".
	// The bridge gets the first host address (.1), nodes the following ones.
	Subnet string
	// Count is the number of nodes, 1..200.
	Count int
	// AuthorizedKeys are authorized_keys lines accepted for root on every node.
	AuthorizedKeys []string
	// WorkDir holds one directory per node (overlay upper/work dirs, /srv,
	// /root, /home, logs). It must exist and must not lie under /etc or /var,
	// which the nodes overlay.
	WorkDir string
	// slotted: Prefix and Subnet were moved by InSlot (see SlotEnv), so the
	// subnet lies in 10.78-10.86 rather than 10.77.
	slotted bool
}

const (
	maxNodes     = 200
	maxPrefixLen = 10 // "PREFIX-200p" must fit IFNAMSIZ-1 = 15
)

var (
	prefixPattern = regexp.MustCompile(`^[a-z0-9]{1,10}$`)
	// allowedNet is the only address space the test bed may use (hard rule:
	// traffic goes only to loopback and to namespaces we create).
	allowedNet = netip.MustParsePrefix("10.77.0.0/16")
	// slottedNet holds the slots' subnets (SlotEnv): 10.64.0.0/11 covers
	// 10.78-10.86, all created by the beds themselves.
	slottedNet = netip.MustParsePrefix("10.64.0.0/11")
)

// layout is Options validated and expanded into concrete names and addresses.
type layout struct {
	prefix     string
	bits       int
	bridgeAddr netip.Addr
	nodeAddrs  []netip.Addr
	workDir    string
}

func checkPrefix(prefix string) error {
	if !prefixPattern.MatchString(prefix) {
		return fmt.Errorf("testbed: prefix %q must be 1-%d characters of [a-z0-9]", prefix, maxPrefixLen)
	}
	return nil
}

func (o Options) layout() (layout, error) {
	if err := checkPrefix(o.Prefix); err != nil {
		return layout{}, err
	}
	if o.Count < 1 || o.Count > maxNodes {
		return layout{}, fmt.Errorf("testbed: count %d out of range 1..%d", o.Count, maxNodes)
	}
	subnet, err := netip.ParsePrefix(o.Subnet)
	if err != nil {
		return layout{}, fmt.Errorf("testbed: subnet: %w", err)
	}
	inside := allowedNet
	if o.slotted {
		inside = slottedNet
	}
	if !subnet.Addr().Is4() || subnet != subnet.Masked() ||
		subnet.Bits() < allowedNet.Bits() || !inside.Contains(subnet.Addr()) {
		return layout{}, fmt.Errorf("testbed: subnet %s must be a network address inside %s", o.Subnet, allowedNet)
	}
	// Network and broadcast addresses are unusable; the bridge takes one more.
	if usable := 1<<(32-subnet.Bits()) - 2; o.Count+1 > usable {
		return layout{}, fmt.Errorf("testbed: subnet %s has room for %d nodes, not %d", subnet, usable-1, o.Count)
	}
	for _, line := range o.AuthorizedKeys {
		if err := checkAuthorizedKey(line); err != nil {
			return layout{}, err
		}
	}
	workDir, err := checkWorkDir(o.WorkDir)
	if err != nil {
		return layout{}, err
	}

	l := layout{prefix: o.Prefix, bits: subnet.Bits(), workDir: workDir}
	l.bridgeAddr = subnet.Addr().Next()
	addr := l.bridgeAddr
	for range o.Count {
		addr = addr.Next()
		l.nodeAddrs = append(l.nodeAddrs, addr)
	}
	return l, nil
}

// checkWorkDir returns dir made absolute. Overlay mount options are
// comma/colon separated, so those characters cannot appear; /etc and /var
// would make an overlay's upper dir overlap its lower dir.
func checkWorkDir(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("testbed: WorkDir is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("testbed: WorkDir %s: %w", dir, err)
	}
	if strings.ContainsAny(abs, ",:\\") {
		return "", fmt.Errorf("testbed: WorkDir %s must not contain ',', ':' or '\\'", abs)
	}
	for _, overlaid := range []string{"/etc", "/var", "/usr"} {
		if abs == overlaid || strings.HasPrefix(abs, overlaid+"/") {
			return "", fmt.Errorf("testbed: WorkDir %s must not be under %s, which the nodes overlay", abs, overlaid)
		}
	}
	return abs, nil
}

func nodeName(prefix string, index int) string { return fmt.Sprintf("%s-%d", prefix, index) }

// peerVethName is the node-side end before it is moved and renamed eth0; it
// needs a name distinct from the host end while both are in the root netns.
func peerVethName(prefix string, index int) string { return nodeName(prefix, index) + "p" }

func bridgeName(prefix string) string { return prefix + "-br" }

// staleNamePattern matches every namespace and link name a bed with this
// prefix can create, and nothing of a bed whose prefix merely starts the same.
func staleNamePattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-([0-9]+p?|br)$`)
}
