package apps

import (
	"fmt"

	"github.com/gitreceive/gitreceive/hooks"
)

// nodeLine is one line about one node: its name in a column eight wide,
// then what happened there. Every node-prefixed line the receiver prints
// goes through it, so the column lines up across commands and deploys.
func nodeLine(node, format string, a ...any) string {
	return fmt.Sprintf("%-8s ", node) + fmt.Sprintf(format, a...)
}

// nodeDetail prints a nodeLine as a progress detail.
func nodeDetail(out *hooks.Progress, node, format string, a ...any) {
	out.Detail("%s", nodeLine(node, format, a...))
}
