//go:build e2e

package realapps

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// wpConfig replaces Debian's wp-config.php (which reads /etc/wordpress)
// with one that takes the database from service.mysql and the keys from
// the instance's secret.
const wpConfig = `<?php
define('DB_NAME', getenv('CONFIG_MYSQL_DBNAME'));
define('DB_USER', getenv('CONFIG_MYSQL_USER'));
define('DB_PASSWORD', getenv('CONFIG_MYSQL_PASSWORD'));
define('DB_HOST', getenv('CONFIG_MYSQL_HOST') . ':' . getenv('CONFIG_MYSQL_PORT'));
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
$gitreceive_secret = trim(file_get_contents(getenv('SILVER_SECRET_FILE')));
foreach (array('AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT', 'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT') as $k) {
	define($k, hash('sha256', $k . $gitreceive_secret));
}
$table_prefix = 'wp_';
define('WP_DEBUG', false);
if (!defined('ABSPATH')) {
	define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
`

func TestWordPress(t *testing.T) {
	if _, err := os.Stat("/usr/share/wordpress/wp-settings.php"); err != nil {
		t.Fatalf("wordpress is not installed (`make test` installs it): %v", err)
	}
	f := receivertest.NewFleet(t, bin, "wp", "10.77.171.0/24", 2)
	const host = "blog.example.test"
	work := t.TempDir()
	receivertest.CopyTree(t, "/usr/share/wordpress", work, false)
	f.Alice.MustGit(t, work, "init", "-q", "-b", "main")
	// .htaccess (Apache's) stays in the tree: nginx ignores it and never
	// serves a dot file.
	f.Alice.Commit(t, work, "WordPress from Debian", map[string]string{
		"wp-config.php": wpConfig,
		"app.ini":       "[production]\napp_name = blog\nplatform = php\nrunner = index.php\nservice.mysql =\ndefault_location = " + host + "\n",
	})
	f.Alice.MustGit(t, work, "remote", "add", "silver", f.Alice.URL("blog"))
	r := f.Alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "blog v1 (main) is live on 2 nodes")

	n1, n2 := f.Bed.Nodes[0], f.Bed.Nodes[1]
	do := func(node int, method, path string, form url.Values) receivertest.HTTPResult {
		var req *http.Request
		if form != nil {
			req, _ = http.NewRequest(method, "http://"+host+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, "http://"+host+path, nil)
		}
		return receivertest.Do(t, f.Bed.Nodes[node], req)
	}

	// The install completes over HTTP: PHP reaches MariaDB through mysqli.
	install := do(0, "POST", "/wp-admin/install.php?step=2", url.Values{
		"weblog_title": {"A gitreceive blog"}, "user_name": {"admin"}, "admin_password": {"wp-pw-1-long-enough"},
		"admin_password2": {"wp-pw-1-long-enough"}, "pw_weak": {"1"}, "admin_email": {"admin@example.test"},
		"blog_public": {"0"}, "language": {""},
	})
	if install.Code != 200 || !strings.Contains(install.Body, "Success!") {
		t.Fatalf("install on %s: %d\n%.3000s", n1.Name, install.Code, install.Body)
	}
	login := do(1, "GET", "/wp-login.php", nil)
	if login.Code != 200 || !strings.Contains(login.Body, `id="user_login"`) {
		t.Fatalf("wp-login.php on %s: %d\n%.2000s", n2.Name, login.Code, login.Body)
	}

	// Every non-PHP file is served by nginx, with its content type.
	for _, tc := range []struct{ path, typ, content string }{
		{"/wp-admin/css/login.min.css", "text/css", "login"},
		{"/wp-includes/css/dashicons.min.css", "text/css", "dashicons"},
		{"/wp-includes/js/jquery/jquery.min.js", "application/javascript", "jQuery"},
		{"/wp-admin/images/wordpress-logo.svg", "image/svg+xml", "<svg"},
		{"/wp-includes/images/w-logo-blue.png", "image/png", "PNG"},
	} {
		for node := range 2 {
			got := do(node, "GET", tc.path, nil)
			if got.Code != 200 || !strings.HasPrefix(got.Header.Get("Content-Type"), tc.typ) || !strings.Contains(got.Body, tc.content) {
				t.Errorf("GET %s on node %d: %d %q (%d bytes)", tc.path, node+1, got.Code, got.Header.Get("Content-Type"), len(got.Body))
			}
		}
	}
	// PHP source never leaves the node, whatever the path looks like.
	for _, path := range []string{"/wp-config.php", "/wp-includes/version.php", "/wp-includes/version.php/x.css",
		"/wp-includes/../wp-config.php", "/WP-CONFIG.PHP", "/wp-config.php.", "/wp-includes/version.PHP", "/readme.html/../wp-config.php"} {
		got := do(0, "GET", path, nil)
		if strings.Contains(got.Body, "<?php") || strings.Contains(got.Body, "DB_PASSWORD") || strings.Contains(got.Body, "$wp_version") {
			t.Errorf("GET %s returned PHP source: %d\n%.500s", path, got.Code, got.Body)
		}
	}
	if got := do(0, "GET", "/.htaccess", nil); got.Code == 200 {
		t.Errorf("a dot file was served: %d", got.Code)
	}
}
