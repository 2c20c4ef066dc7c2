package apps

import (
	"errors"
	"testing"

	"github.com/gitreceive/gitreceive/nodes"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

func TestSingletonsPlacement(t *testing.T) {
	down := errors.New("unreachable")
	node := func(name string, here, moved bool) nodes.NodePs {
		return nodes.NodePs{Node: nodes.Node{Name: name}, Report: agent.PsReport{Release: 3, Singletons: here, SingletonsMoved: moved,
			Cron: []agent.CronJobReport{{Name: "nightly", Here: here}}}}
	}
	// An instance whose only singleton is a worker of nodes = one.
	worker := func(name string, here, moved bool) nodes.NodePs {
		r := node(name, here, moved)
		r.Report.Cron, r.Report.OneNodeWorkers = nil, []string{"mailer"}
		return r
	}
	unreachable := nodes.NodePs{Node: nodes.Node{Name: "a"}, Err: down}
	noCron := nodes.NodePs{Node: nodes.Node{Name: "a"}, Report: agent.PsReport{Release: 3}}
	disabled, disabledB := node("a", true, false), node("b", false, true)
	disabled.Report.Disabled, disabledB.Report.Disabled = true, true
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
		{"no singletons", nil, []nodes.NodePs{noCron}, "", false},
		{"worker holder healthy", nil, []nodes.NodePs{worker("a", true, false), worker("b", false, false)}, "a", false},
		{"worker holder fails its check", []string{"a"}, []nodes.NodePs{worker("a", true, false), worker("b", false, false)}, "b", true},
		{"worker holder unreachable", nil, []nodes.NodePs{unreachable, worker("b", false, false)}, "b", true},
		{"worker's node came back", nil, []nodes.NodePs{worker("a", true, false), worker("b", true, true)}, "b", true},
		{"disabled on a node", nil, []nodes.NodePs{disabled, node("b", false, false)}, "", false},
		{"holder not yet enabled", nil, []nodes.NodePs{node("a", false, false), disabledB}, "", false},
		{"nothing healthy", nil, []nodes.NodePs{unreachable}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var statuses []nodes.Status
			for _, name := range tt.failing {
				statuses = append(statuses, nodes.Status{Node: nodes.Node{Name: name}, Err: down})
			}
			chosen, move := singletonsPlacement(statuses, tt.reports)
			if chosen != tt.chosen || move != tt.move {
				t.Fatalf("singletonsPlacement = %q, %v; want %q, %v", chosen, move, tt.chosen, tt.move)
			}
		})
	}
}
