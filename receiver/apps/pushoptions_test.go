package apps

import (
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes"
)

func TestPushOptions(t *testing.T) {
	all := []nodes.Node{{Name: "web1"}, {Name: "web2"}, {Name: "web3"}}
	for _, tc := range []struct {
		opts []string
		want string // kept node names, or the error's text
	}{
		{nil, "web1 web2 web3"},
		{[]string{"skip-node=web2"}, "web1 web3"},
		{[]string{"skip-node=web2", "skip-node=web3"}, "web1"},
		{[]string{"skip-node=web1", "skip-node=web2", "skip-node=web3"}, "skip every node"},
		{[]string{"skip-node=web9"}, `there is no node "web9"`},
		{[]string{"skip-node="}, "invalid node name"},
		{[]string{"skip-node=$(reboot)"}, "invalid node name"},
		{[]string{"ci.skip"}, `unknown push option "ci.skip"`},
	} {
		var got string
		po, err := parsePushOptions(tc.opts)
		if err == nil {
			var kept []nodes.Node
			kept, err = po.targets(all)
			for _, n := range kept {
				got += n.Name + " "
			}
			got = strings.TrimSpace(got)
		}
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.opts, got, tc.want)
		}
	}
}

func TestPushOptionsFromEnv(t *testing.T) {
	p := &Push{Env: map[string]string{"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "skip-node=a", "GIT_PUSH_OPTION_1": "b"}}
	if got := strings.Join(p.Options(), ","); got != "skip-node=a,b" {
		t.Fatalf("Options() = %q", got)
	}
}
