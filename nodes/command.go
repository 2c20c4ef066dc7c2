package nodes

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	gossh "golang.org/x/crypto/ssh"
)

const localUsage = `gitreceive nodes [--data DIR] list
       gitreceive nodes [--data DIR] add NAME [USER@]HOST[:PORT] [--services] [--host-key-fingerprint SHA256:...]
       gitreceive nodes [--data DIR] remove NAME
       gitreceive nodes [--data DIR] check [NAME]
       gitreceive nodes [--data DIR] setup NAME|--all`

// RemoteUsage is what admins may run over SSH.
const RemoteUsage = `nodes list
       nodes check [NAME]`

// Command runs `nodes ...` for the local CLI (local: every verb) and over
// SSH (list and check only: changing the fleet needs the operator's shell).
func (f *Fleet) Command(ctx context.Context, args []string, stdout, stderr io.Writer, local bool) int {
	usage := RemoteUsage
	if local {
		usage = localUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gitreceive: "+format+"\n", a...)
		return 1
	}
	if len(args) == 0 {
		return fail("usage: %s", usage)
	}
	switch verb := args[0]; {
	case verb == "list" && len(args) == 1:
		nodes, err := f.Inventory.Targets()
		if err != nil {
			return fail("%v", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADDRESS\tSERVICES")
		for _, n := range nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Name, n.String(), yesNo(n.Services))
		}
		tw.Flush()
		return 0
	case verb == "check" && len(args) <= 2:
		return f.checkCommand(ctx, args[1:], stdout, fail)
	case verb == "add" && local:
		return f.addCommand(ctx, args[1:], stdout, usage, fail)
	case verb == "setup" && local && len(args) == 2:
		nodes, err := f.Inventory.Targets()
		switch {
		case err != nil:
			return fail("%v", err)
		case args[1] == LocalName:
			// The receiver host may be set up whether or not it is a target.
			nodes = []Node{LocalNode}
		case args[1] != "--all":
			n, err := f.Inventory.Get(args[1])
			if err != nil {
				return fail("%v", err)
			}
			nodes = []Node{n}
		}
		if err := f.Setup(ctx, nodes, f.SetupPackages, stdout); err != nil {
			return fail("%v", err)
		}
		return 0
	case verb == "remove" && local && len(args) == 2:
		if err := f.Remove(args[1]); err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stdout, "removed node %s\n", args[1])
		return 0
	default:
		return fail("usage: %s", usage)
	}
}

func (f *Fleet) addCommand(ctx context.Context, args []string, stdout io.Writer, usage string, fail func(string, ...any) int) int {
	var positional []string
	var n Node
	fingerprint := ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--services":
			n.Services = true
		case a == "--host-key-fingerprint" && i+1 < len(args):
			i++
			fingerprint = args[i]
		case strings.HasPrefix(a, "--host-key-fingerprint="):
			fingerprint = strings.TrimPrefix(a, "--host-key-fingerprint=")
		case strings.HasPrefix(a, "-"):
			return fail("unknown option %q; usage: %s", a, usage)
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 2 {
		return fail("usage: %s", usage)
	}
	if fingerprint != "" && !strings.HasPrefix(fingerprint, "SHA256:") {
		return fail("--host-key-fingerprint takes the SHA256:... form that ssh-keygen -lf prints")
	}
	n.Name = positional[0]
	if err := ValidName(n.Name); err != nil {
		return fail("%v", err)
	}
	var err error
	if n.User, n.Host, n.Port, err = ParseAddress(positional[1]); err != nil {
		return fail("%v", err)
	}
	line, err := f.AuthorizedKeyLine()
	if err != nil {
		return fail("%v", err)
	}
	key, err := f.Add(ctx, n, fingerprint)
	if err != nil {
		return fail("%v", err)
	}
	how := "trusted on first use"
	if fingerprint != "" {
		how = "matches the fingerprint given"
	}
	fmt.Fprintf(stdout, "added node %s (%s)\nhost key %s %s, pinned (%s)\n\nLet the receiver log in: add this line to %s's ~/.ssh/authorized_keys on %s:\n\n    %s\n",
		n.Name, n.String(), key.Type(), gossh.FingerprintSHA256(key), how, n.User, n.Name, line)
	return 0
}

func (f *Fleet) checkCommand(ctx context.Context, names []string, stdout io.Writer, fail func(string, ...any) int) int {
	nodes, err := f.Inventory.Targets()
	if err != nil {
		return fail("%v", err)
	}
	if len(names) == 1 {
		n, err := f.Inventory.Get(names[0])
		if err != nil {
			return fail("%v", err)
		}
		nodes = []Node{n}
	}
	code := 0
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATUS\tAGENT\tDISK FREE\tLIVE")
	for _, st := range f.Check(ctx, nodes) {
		if st.Err != nil {
			code = 1
			fmt.Fprintf(tw, "%s\t%s\tfailed: %v\t-\t-\t-\n", st.Node.Name, st.Node.String(), st.Err)
			continue
		}
		agentVersion := st.Agent
		if agentVersion == "" {
			agentVersion = "missing or outdated; run `gitreceive nodes setup " + st.Node.Name + "`"
		}
		var live []string
		for _, in := range st.Instances {
			if in.Release > 0 {
				live = append(live, fmt.Sprintf("%s/%s v%d", in.App, in.Instance, in.Release))
			}
		}
		if len(live) == 0 {
			live = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\tok (%dms)\t%s\t%.1f GB\t%s\n", st.Node.Name, st.Node.String(), st.Latency.Milliseconds(),
			agentVersion, float64(st.FreeDisk)/(1<<30), strings.Join(live, ", "))
	}
	tw.Flush()
	return code
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
