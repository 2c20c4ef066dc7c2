package apps

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gitreceive/gitreceive/names"
	"github.com/gitreceive/gitreceive/nodes"
)

// pushOptionsHelp lists what `git push -o` may say.
const pushOptionsHelp = "skip-node=NODE (deploy to every node but NODE; repeatable), seed-from=BRANCH (a new staging instance starts with a copy of BRANCH's service data)"

// pushOptions are the `git push -o OPTION` values of a push.
type pushOptions struct {
	skipNodes map[string]bool
	seedFrom  string
}

// Options returns the push options (`git push -o`) in the order given.
func (p *Push) Options() []string {
	n, _ := strconv.Atoi(p.Env["GIT_PUSH_OPTION_COUNT"])
	var opts []string
	for i := 0; i < n && i < 100; i++ {
		opts = append(opts, p.Env["GIT_PUSH_OPTION_"+strconv.Itoa(i)])
	}
	return opts
}

// parsePushOptions accepts only the options gitreceive knows: a typo must
// not deploy somewhere the pusher meant to skip.
func parsePushOptions(opts []string) (pushOptions, error) {
	po := pushOptions{skipNodes: map[string]bool{}}
	for _, o := range opts {
		key, value, _ := strings.Cut(o, "=")
		switch key {
		case "skip-node":
			if err := nodes.ValidName(value); err != nil {
				return po, fmt.Errorf("push option %q: %w", o, err)
			}
			po.skipNodes[value] = true
		case "seed-from":
			if err := names.CheckBranch(value); err != nil {
				return po, fmt.Errorf("push option %q: %w", o, err)
			}
			po.seedFrom = value
		default:
			return po, fmt.Errorf("unknown push option %q; gitreceive knows: %s", o, pushOptionsHelp)
		}
	}
	return po, nil
}

// targets returns the nodes a push deploys to: every target of the
// inventory but the skipped ones, each of which must exist.
func (po pushOptions) targets(all []nodes.Node) ([]nodes.Node, error) {
	known := map[string]bool{}
	var kept []nodes.Node
	for _, n := range all {
		known[n.Name] = true
		if !po.skipNodes[n.Name] {
			kept = append(kept, n)
		}
	}
	for name := range po.skipNodes {
		if !known[name] {
			return nil, fmt.Errorf("push option skip-node=%s: there is no node %q; see `nodes list`", name, name)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("the push options skip every node; nothing would be deployed")
	}
	return kept, nil
}
