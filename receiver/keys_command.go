package receiver

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/gitreceive/gitreceive/receiver/apps"
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

// KeysCommand runs `keys` for the local CLI (fromFile: a key may come
// from a FILE argument) and returns its exit status.
func KeysCommand(store *keystore.Store, args []string, stdin io.Reader, stdout, stderr io.Writer, fromFile bool) int {
	if err := runKeys(store, args, stdin, stdout, fromFile); err != nil {
		fmt.Fprintf(stderr, "gitreceive: %v\n", err)
		return 1
	}
	return 0
}

// runKeys runs `keys list|add|remove` for the local CLI and over SSH
// (stdin only); its errors are userErrors.
func runKeys(store *keystore.Store, args []string, stdin io.Reader, stdout io.Writer, fromFile bool) error {
	usage := keysUsage
	if fromFile {
		usage = localKeysUsage
	}
	if len(args) == 0 {
		return apps.Failf("usage: %s", usage)
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return apps.Failf("usage: %s", usage)
		}
		return listKeys(store, stdout)
	case "add":
		return addKey(store, args[1:], stdin, stdout, fromFile, usage)
	case "remove":
		if len(args) != 2 {
			return apps.Failf("usage: %s", usage)
		}
		k, err := store.Remove(args[1])
		if err != nil {
			return apps.Failf("%v", err)
		}
		fmt.Fprintf(stdout, "removed key %s (%s)\n", k.Name, k.Fingerprint())
		return nil
	default:
		return apps.Failf("unknown keys command %q; usage: %s", args[0], usage)
	}
}

func listKeys(store *keystore.Store, stdout io.Writer) error {
	keys, err := store.List()
	if err != nil {
		return apps.Failf("%v", err)
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
	return nil
}

// keyOptions are the arguments of `keys add`.
type keyOptions struct {
	admin, appsGiven bool
	apps             []string
	positional       []string // NAME [FILE|-]
}

// parseKeyOptions reads the arguments of `keys add`.
func parseKeyOptions(args []string, usage string) (keyOptions, error) {
	var o keyOptions
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--admin":
			o.admin = true
		case a == "--apps" || strings.HasPrefix(a, "--apps="):
			v, ok := strings.CutPrefix(a, "--apps=")
			if !ok {
				if i+1 == len(args) {
					return o, apps.Failf("--apps needs a comma-separated list of apps; usage: %s", usage)
				}
				i++
				v = args[i]
			}
			o.appsGiven = true
			for _, app := range strings.Split(v, ",") {
				if app = strings.TrimSpace(app); app != "" {
					o.apps = append(o.apps, app)
				}
			}
		case strings.HasPrefix(a, "-") && a != "-":
			return o, apps.Failf("unknown option %q; usage: %s", a, usage)
		default:
			o.positional = append(o.positional, a)
		}
	}
	return o, nil
}

func addKey(store *keystore.Store, args []string, stdin io.Reader, stdout io.Writer, fromFile bool, usage string) error {
	o, err := parseKeyOptions(args, usage)
	if err != nil {
		return err
	}
	maxPositional := 1
	if fromFile {
		maxPositional = 2
	}
	if len(o.positional) == 0 || len(o.positional) > maxPositional {
		return apps.Failf("usage: %s", usage)
	}
	if o.admin && o.appsGiven {
		return apps.Failf("an admin key has access to every app; give --admin or --apps, not both")
	}
	if !o.admin && len(o.apps) == 0 {
		return apps.Failf("say what the key may do: --admin, or --apps APP,APP for a deployer")
	}

	in := stdin
	if len(o.positional) == 2 && o.positional[1] != "-" {
		f, err := os.Open(o.positional[1])
		if err != nil {
			return apps.Failf("cannot read the key file: %v", err)
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, maxKeyInput))
	if err != nil {
		return apps.Failf("reading the public key: %v", err)
	}
	if len(data) > keystore.MaxPublicKeyInput {
		return apps.Failf("the input is more than %d bytes, more than a public key can be; give the .pub file", keystore.MaxPublicKeyInput)
	}
	pub, err := keystore.ParsePublicKey(data)
	if err != nil {
		return apps.Failf("%v", err)
	}
	k := keystore.Key{Name: o.positional[0], Role: keystore.RoleDeployer, Apps: o.apps, PublicKey: pub}
	if o.admin {
		k.Role = keystore.RoleAdmin
	}
	if err := store.Add(k); err != nil {
		return apps.Failf("%v", err)
	}
	fmt.Fprintf(stdout, "added %s key %s (%s)\n", k.Role, k.Name, k.Fingerprint())
	return nil
}
