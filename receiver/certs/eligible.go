package certs

import (
	"net/netip"
	"strings"

	"github.com/gitreceive/gitreceive/names"
)

// Eligible reports whether a public CA can issue a certificate for host and,
// when it cannot, why, as a sentence for the pusher: such hosts are skipped,
// not failed. The rules are the ones every public CA applies: no IP literals
// (HTTP-01 cannot prove them), no names under .localhost (RFC 6761), no names
// without a dot (not in the public DNS).
func Eligible(host string) (ok bool, why string) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case h == "":
		return false, "no host name given"
	case isIP(h):
		return false, names.Show(host) + " is an IP address; public CAs do not issue certificates for IP addresses over HTTP-01"
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return false, names.Show(host) + " is under .localhost, which never resolves outside this machine"
	case !names.IsHost(h):
		return false, names.Show(host) + " is not a valid host name"
	case !strings.Contains(h, "."):
		return false, names.Show(host) + " has no dot, so it is not a public DNS name"
	}
	return true, ""
}

func isIP(h string) bool {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	_, err := netip.ParseAddr(h)
	return err == nil
}
