package apps

import (
	"errors"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestCronNode(t *testing.T) {
	report := func(name string, here bool) nodes.NodePs {
		return nodes.NodePs{Node: nodes.Node{Name: name}, Report: agent.PsReport{Release: 2, Cron: []agent.CronJobReport{{Name: "nightly", Here: here}}}}
	}
	down := nodes.NodePs{Node: nodes.Node{Name: "n0"}, Err: errors.New("unreachable")}
	for _, tt := range []struct {
		reports []nodes.NodePs
		job     string
		want    string // node, or part of the error
	}{
		{[]nodes.NodePs{report("n1", false), report("n2", true)}, "nightly", "n2"},
		{[]nodes.NodePs{down, report("n1", true)}, "nightly", "n1"},
		{[]nodes.NodePs{report("n1", false), report("n2", false)}, "nightly", "no node runs cron job nightly"},
		{[]nodes.NodePs{report("n1", true)}, "weekly", "has no cron job weekly"},
	} {
		n, err := cronNode(tt.reports, tt.job)
		if got := n.Name + errString(err); !strings.Contains(got, tt.want) {
			t.Errorf("cronNode(%s) = %q, want %q", tt.job, got, tt.want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
