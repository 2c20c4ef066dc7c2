package nodes

import "testing"

// The transport is chosen from the node in one place: the receiver host
// runs this binary as its agent, every other node the uploaded copy over
// SSH.
func TestTransportTo(t *testing.T) {
	f := &Fleet{AgentBin: "/opt/gitreceive"}
	for _, tc := range []struct {
		node    Node
		ssh     bool
		bin     string
		uploads bool
	}{
		{LocalNode, false, "/opt/gitreceive", false},
		{Node{Name: "web1", User: "root", Host: "10.0.0.1", Port: 22}, true, AgentPath, true},
	} {
		tr := f.transportTo(tc.node)
		if _, ssh := tr.(*sshTransport); ssh != tc.ssh {
			t.Errorf("%s: transport %T", tc.node.Name, tr)
		}
		if tr.agentBin() != tc.bin || tr.uploadsAgent() != tc.uploads {
			t.Errorf("%s: agent %s (uploaded: %v), want %s (%v)", tc.node.Name, tr.agentBin(), tr.uploadsAgent(), tc.bin, tc.uploads)
		}
	}
}
