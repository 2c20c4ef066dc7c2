package services

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/gitreceive/gitreceive/names"
)

// listenFlag is how the receiver tells a node's agent where app nodes
// reach it: `service OP SERVICE ... --listen=ADDR`.
const listenFlag = "--listen="

// ListenFlag takes the --listen=ADDR arguments out of args and returns
// the rest with the addresses they name, resolved on this node and each
// one of its own: a server told to bind an address the node does not
// have would not start, and binding every interface instead is what this
// is here to prevent.
func ListenFlag(ctx context.Context, args []string) ([]string, []string, error) {
	var rest, listen []string
	for _, a := range args {
		v, ok := strings.CutPrefix(a, listenFlag)
		if !ok {
			rest = append(rest, a)
			continue
		}
		ips, err := resolveListen(ctx, v)
		if err != nil {
			return nil, nil, err
		}
		for _, ip := range ips {
			if !slices.Contains(listen, ip) {
				listen = append(listen, ip)
			}
		}
	}
	if len(listen) == 0 {
		return rest, nil, nil
	}
	own, err := localAddrs()
	if err != nil {
		return nil, nil, err
	}
	for _, ip := range listen {
		if !own[ip] {
			return nil, nil, fmt.Errorf("--listen: %s is not an address of this node, so its database servers cannot listen there; give the node its own address in the receiver's nodes.ini (gitreceive nodes add NAME USER@ADDRESS)", ip)
		}
	}
	return rest, listen, nil
}

// resolveListen is the IP addresses of an inventory host: itself when it
// is one, else what the node resolves the name to.
func resolveListen(ctx context.Context, v string) ([]string, error) {
	if a, err := netip.ParseAddr(v); err == nil {
		if a.Zone() != "" {
			return nil, fmt.Errorf("--listen=%s: an address with a zone cannot be bound by every server; use the node's global address", v)
		}
		return []string{a.Unmap().String()}, nil
	}
	if !names.IsHost(strings.ToLower(v)) {
		return nil, fmt.Errorf("--listen=%q is neither an IP address nor a host name", v)
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, v)
	if err != nil {
		return nil, fmt.Errorf("--listen=%s: %w", v, err)
	}
	var out []string
	for _, s := range addrs {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, a.Unmap().String())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--listen=%s resolves to no address", v)
	}
	return out, nil
}

// localAddrs are the IP addresses of this node's interfaces.
func localAddrs() (map[string]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			own[p.Addr().Unmap().String()] = true
		}
	}
	return own, nil
}

// bindAddrs are the addresses a database server listens on: IPv4
// loopback (the receiver's own checks, a single box's apps) and where app
// nodes reach the node, never a wildcard. They are IP literals (checked
// by ListenFlag), so they are safe in configuration files.
func bindAddrs(h Host) []string {
	out := []string{"127.0.0.1"}
	for _, a := range h.Listen {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.IsUnspecified() || slices.Contains(out, ip.String()) {
			continue
		}
		out = append(out, ip.String())
	}
	return out
}

// ListenArg is the argument that tells a node's agent to bind its
// servers to addr (an inventory host) besides loopback.
func ListenArg(addr string) string { return listenFlag + addr }
