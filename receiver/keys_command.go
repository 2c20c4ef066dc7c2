package receiver

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/gitreceive/gitreceive/receiver/keystore"
)

const keysUsage = `keys list
       keys add NAME [--admin] [--apps APP,APP...]   (the public key on stdin)
       keys remove NAME|SHA256:FINGERPRINT`

const localKeysUsage = `gitreceive keys [--data DIR] list
       gitreceive keys [--data DIR] add NAME [--admin] [--apps APP,APP...] [FILE|-]
       gitreceive keys [--data DIR] remove NAME|SHA256:FINGERPRINT`

// maxKeyInput bounds what is read as a public key: one byte more than
// keystore accepts, so a larger input is reported as too large, not cut.
const maxKeyInput = keystore.MaxPublicKeyInput + 1

// KeysCommand runs `keys list|add|remove` for the local CLI (fromFile: a key
// may come from a FILE argument) and over SSH (stdin only).
func KeysCommand(store *keystore.Store, args []string, stdin io.Reader, stdout, stderr io.Writer, fromFile bool) int {
	usage := keysUsage
	if fromFile {
		usage = localKeysUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "gitreceive: "+format+"\n", a...)
		return 1
	}
	if len(args) == 0 {
		return fail("usage: %s", usage)
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return fail("usage: %s", usage)
		}
		return listKeys(store, stdout, fail)
	case "add":
		return addKey(store, args[1:], stdin, stdout, fromFile, usage, fail)
	case "remove":
		if len(args) != 2 {
			return fail("usage: %s", usage)
		}
		k, err := store.Remove(args[1])
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stdout, "removed key %s (%s)\n", k.Name, k.Fingerprint())
		return 0
	default:
		return fail("unknown keys command %q; usage: %s", args[0], usage)
	}
}

func listKeys(store *keystore.Store, stdout io.Writer, fail func(string, ...any) int) int {
	keys, err := store.List()
	if err != nil {
		return fail("%v", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tAPPS\tFINGERPRINT")
	for _, k := range keys {
		apps := strings.Join(k.Apps, ",")
		if k.IsAdmin() {
			apps = "(all)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Name, k.Role, apps, k.Fingerprint())
	}
	tw.Flush()
	return 0
}

func addKey(store *keystore.Store, args []string, stdin io.Reader, stdout io.Writer, fromFile bool, usage string, fail func(string, ...any) int) int {
	var positional []string
	admin, appsGiven := false, false
	var apps []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--admin":
			admin = true
		case a == "--apps" || strings.HasPrefix(a, "--apps="):
			v, ok := strings.CutPrefix(a, "--apps=")
			if !ok {
				if i+1 == len(args) {
					return fail("--apps needs a comma-separated list of apps; usage: %s", usage)
				}
				i++
				v = args[i]
			}
			appsGiven = true
			for _, app := range strings.Split(v, ",") {
				if app = strings.TrimSpace(app); app != "" {
					apps = append(apps, app)
				}
			}
		case strings.HasPrefix(a, "-") && a != "-":
			return fail("unknown option %q; usage: %s", a, usage)
		default:
			positional = append(positional, a)
		}
	}
	maxPositional := 1
	if fromFile {
		maxPositional = 2
	}
	if len(positional) == 0 || len(positional) > maxPositional {
		return fail("usage: %s", usage)
	}
	if admin && appsGiven {
		return fail("an admin key has access to every app; give --admin or --apps, not both")
	}
	if !admin && len(apps) == 0 {
		return fail("say what the key may do: --admin, or --apps APP,APP for a deployer")
	}

	in := stdin
	if len(positional) == 2 && positional[1] != "-" {
		f, err := os.Open(positional[1])
		if err != nil {
			return fail("cannot read the key file: %v", err)
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, maxKeyInput))
	if err != nil {
		return fail("reading the public key: %v", err)
	}
	if len(data) > keystore.MaxPublicKeyInput {
		return fail("the input is more than %d bytes, more than a public key can be; give the .pub file", keystore.MaxPublicKeyInput)
	}
	pub, err := keystore.ParsePublicKey(data)
	if err != nil {
		return fail("%v", err)
	}
	k := keystore.Key{Name: positional[0], Role: keystore.RoleDeployer, Apps: apps, PublicKey: pub}
	if admin {
		k.Role = keystore.RoleAdmin
	}
	if err := store.Add(k); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "added %s key %s (%s)\n", k.Role, k.Name, k.Fingerprint())
	return 0
}
