package appconfig

import (
	"fmt"
	"strings"
)

// scriptPrefix marks an update_fetch line that runs a script from the tree
// instead of requesting a URL path.
const scriptPrefix = "script:"

// checkUpdateFetch reads update_fetch: one item per line, run in order
// after each deploy.
func (c *checker) checkUpdateFetch() []FetchItem {
	s, ok := c.setting(keyUpdateFetch)
	if !ok {
		return nil
	}
	var items []FetchItem
	for _, l := range c.valueLines(s) {
		item, problem := c.fetchItem(l.text)
		if problem != "" {
			c.errorf(l.line, keyUpdateFetch, "%s", problem)
			continue
		}
		items = append(items, item)
	}
	return items
}

func (c *checker) fetchItem(text string) (FetchItem, string) {
	switch {
	case strings.HasPrefix(text, "/"):
		if problem := urlPathProblem(text); problem != "" {
			return FetchItem{}, fmt.Sprintf("%q %s; list one URL path on the app per line, like /setup", text, problem)
		}
		return FetchItem{URLPath: text}, ""
	case strings.HasPrefix(text, scriptPrefix):
		fields := strings.Fields(strings.TrimPrefix(text, scriptPrefix))
		if len(fields) == 0 {
			return FetchItem{}, fmt.Sprintf("%q names no script; write script:PATH [ARGS...], e.g. script:bin/setup.py --quiet", text)
		}
		path, err := cleanTreePath(fields[0])
		if err != nil {
			return FetchItem{}, fmt.Sprintf("script %q %v; %s", fields[0], err, pathFix)
		}
		if problem := treeFileProblem(c.tree, path); problem != "" {
			return FetchItem{}, fmt.Sprintf("script %s %s; %s", path, problem, pathFix)
		}
		item := FetchItem{Script: path}
		if len(fields) > 1 {
			item.Args = fields[1:]
		}
		return item, ""
	}
	return FetchItem{}, fmt.Sprintf("%q is neither a URL path starting with / nor script:PATH; write one of those per line, e.g. /setup or script:bin/setup.py", text)
}
