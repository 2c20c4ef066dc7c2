package appconfig

import (
	"fmt"
	"strings"
)

// defaultWSGIObject is the name Silver Lining (and mod_wsgi) look up in a
// python runner when app.ini names none.
const defaultWSGIObject = "application"

// checkRunner reads runner: the script that serves the app, which must be a
// file of the platform's language in the pushed tree.
func (c *checker) checkRunner(platform Platform) Runner {
	value, line, ok := c.required(keyRunner, runnerExample(platform))
	if !ok {
		return Runner{}
	}
	runner, problem := parseRunner(value, platform)
	if problem == "" {
		problem = treeFileProblem(c.tree, runner.Path)
		if problem != "" {
			problem = fmt.Sprintf("%s %s; %s", runner.Path, problem, pathFix)
		}
	}
	if problem != "" {
		c.errorf(line, keyRunner, "%s", problem)
		return Runner{}
	}
	return runner
}

// parseRunner splits "path#object" and checks both parts against the
// platform, without looking at the tree. With no platform (app.ini asked
// for an unknown one, reported elsewhere) only the path is checked.
func parseRunner(value string, platform Platform) (Runner, string) {
	rawPath, object, hasObject := strings.Cut(value, "#")
	path, err := cleanTreePath(rawPath)
	if err != nil {
		return Runner{}, fmt.Sprintf("%q %v; %s", rawPath, err, pathFix)
	}
	if path == "" {
		return Runner{}, fmt.Sprintf("%q is the app root, not a file; %s", rawPath, pathFix)
	}
	switch platform {
	case PlatformPython:
		if !strings.HasSuffix(path, ".py") {
			return Runner{}, fmt.Sprintf("%s is not a .py file; point runner at the app's WSGI script (e.g. src/app/wsgi.py), or set platform = php for a PHP app", path)
		}
		if !hasObject {
			return Runner{Path: path, Object: defaultWSGIObject}, ""
		}
		object = strings.TrimSpace(object)
		if problem := pythonNameProblem(object); problem != "" {
			return Runner{}, fmt.Sprintf("%q after # %s; name the WSGI object, e.g. runner = %s#%s, or drop the # part to use %q",
				object, problem, path, defaultWSGIObject, defaultWSGIObject)
		}
		return Runner{Path: path, Object: object}, ""
	case PlatformPHP:
		if hasObject {
			return Runner{}, fmt.Sprintf("%q names an object after #, which only python runners take; remove the # part", value)
		}
		if !strings.HasSuffix(path, ".php") {
			return Runner{}, fmt.Sprintf("%s is not a .php file; point runner at the app's front script (e.g. index.php), or set platform = python for a WSGI app", path)
		}
	}
	return Runner{Path: path, Object: strings.TrimSpace(object)}, ""
}

func runnerExample(platform Platform) string {
	if platform == PlatformPHP {
		return keyRunner + " = index.php"
	}
	return keyRunner + " = src/app/wsgi.py"
}
