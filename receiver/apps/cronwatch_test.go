package apps

import (
	"errors"
	"testing"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestCronPlacement(t *testing.T) {
	down := errors.New("unreachable")
	node := func(name string, here, moved bool) nodes.NodePs {
		return nodes.NodePs{Node: nodes.Node{Name: name}, Report: agent.PsReport{Release: 3, CronMoved: moved,
			Cron: []agent.CronJobReport{{Name: "nightly", Here: here}}}}
	}
	unreachable := nodes.NodePs{Node: nodes.Node{Name: "a"}, Err: down}
	noCron := nodes.NodePs{Node: nodes.Node{Name: "a"}, Report: agent.PsReport{Release: 3}}
	for _, tt := range []struct {
		name    string
		failing []string // nodes whose check fails
		reports []nodes.NodePs
		chosen  string
		move    bool
	}{
		{"holder healthy", nil, []nodes.NodePs{node("a", true, false), node("b", false, false)}, "a", false},
		{"holder unreachable", nil, []nodes.NodePs{unreachable, node("b", false, false), node("c", false, false)}, "b", true},
		{"holder fails its check", []string{"a"}, []nodes.NodePs{node("a", true, false), node("b", false, false)}, "b", true},
		{"no holder", nil, []nodes.NodePs{node("b", false, false), node("a", false, false)}, "a", true},
		{"the deploy's node came back", nil, []nodes.NodePs{node("a", true, false), node("b", true, true)}, "b", true},
		{"two holders, none moved", nil, []nodes.NodePs{node("b", true, false), node("a", true, false)}, "a", true},
		{"no cron jobs", nil, []nodes.NodePs{noCron}, "", false},
		{"nothing healthy", nil, []nodes.NodePs{unreachable}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var statuses []nodes.Status
			for _, name := range tt.failing {
				statuses = append(statuses, nodes.Status{Node: nodes.Node{Name: name}, Err: down})
			}
			chosen, move := cronPlacement(statuses, tt.reports)
			if chosen != tt.chosen || move != tt.move {
				t.Fatalf("cronPlacement = %q, %v; want %q, %v", chosen, move, tt.chosen, tt.move)
			}
		})
	}
}
