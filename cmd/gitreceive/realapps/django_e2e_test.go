//go:build e2e

package realapps

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/receiver/receivertest"
)

// The Silver Lining tutorial's layout: the project in src/, Django copied
// into lib/python as pip would put it there, a .pth file written on the
// developer's machine (absolute, fixed by the push), silvercustomize.py
// naming the settings, settings taking SECRET_KEY from silversupport and
// the database from service.postgis, admin static files through static/.
var djangoApp = map[string]string{
	"app.ini": `[production]
app_name = sampleapp
runner = src/sampleapp/wsgi.py
default_location = sampleapp.example.test
service.postgis =
update_fetch = script:bin/manage.py migrate --noinput
`,
	"lib/python/sampleapp.pth":      "/home/alice/sampleapp/src\n",
	"lib/python/silvercustomize.py": "import os\nos.environ['DJANGO_SETTINGS_MODULE'] = 'sampleapp.settings'\n",
	"bin/manage.py": `#!/usr/bin/env python3
import sys
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
`,
	"src/sampleapp/__init__.py": "",
	"src/sampleapp/wsgi.py": `from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
`,
	"src/sampleapp/urls.py": `from django.contrib import admin
from django.urls import path
urlpatterns = [path('admin/', admin.site.urls)]
`,
	"src/sampleapp/settings.py": `import os
from silversupport.secret import get_secret
SECRET_KEY = get_secret()
DEBUG = False
ALLOWED_HOSTS = ['*']
INSTALLED_APPS = [
    'django.contrib.admin', 'django.contrib.auth', 'django.contrib.contenttypes',
    'django.contrib.sessions', 'django.contrib.messages', 'django.contrib.staticfiles',
]
MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
]
ROOT_URLCONF = 'sampleapp.urls'
TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.template.context_processors.request',
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
    ]},
}]
DATABASES = {'default': {
    'ENGINE': 'django.db.backends.postgresql',
    'NAME': os.environ['CONFIG_PG_DBNAME'], 'USER': os.environ['CONFIG_PG_USER'],
    'PASSWORD': os.environ['CONFIG_PG_PASSWORD'],
    'HOST': os.environ['CONFIG_PG_HOST'], 'PORT': os.environ['CONFIG_PG_PORT'],
}}
STATIC_URL = '/static/'
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
`,
}

// vendorDjango copies Debian's Django and what it needs into lib/python,
// keeping symlinks (cp -a) or following them (cp -rL).
func vendorDjango(t *testing.T, work string, keepLinks bool) {
	t.Helper()
	for _, pkg := range []string{"django", "asgiref", "sqlparse", "pytz"} {
		dst := filepath.Join(work, "lib", "python", pkg)
		if err := os.RemoveAll(dst); err != nil {
			t.Fatal(err)
		}
		receivertest.CopyTree(t, filepath.Join("/usr/lib/python3/dist-packages", pkg), dst, keepLinks)
	}
}

var csrfInput = regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`)

func TestDjangoTutorialApp(t *testing.T) {
	receivertest.RequireTools(t, "python3")
	if _, err := os.Stat("/usr/lib/python3/dist-packages/django"); err != nil {
		t.Fatalf("python3-django is not installed (`make test` installs it): %v", err)
	}
	f := receivertest.NewFleet(t, bin, "dj", "10.77.170.0/24", 2)
	const host = "sampleapp.example.test"
	work := f.Alice.WorkTree(t, djangoApp)
	f.Alice.MustGit(t, work, "remote", "add", "silver", f.Alice.URL("sampleapp"))
	f.Alice.MustGit(t, work, "config", "core.symlinks", "true")
	if err := os.MkdirAll(filepath.Join(work, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../lib/python/django/contrib/admin/static", filepath.Join(work, "static", "static")); err != nil {
		t.Fatal(err)
	}

	// Copied with cp -a, Debian's Django keeps links to /usr/share: the
	// push names every one and says how to fix them.
	vendorDjango(t, work, true)
	f.Alice.Commit(t, work, "vendor django (cp -a)", nil)
	r := f.Alice.Git(t, work, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("a push with links out of the app went through:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "2 symlinks cannot be deployed")
	mustContain(t, r.Stderr, "lib/python/django/contrib/admin/static/admin/js/vendor/jquery/jquery.js")
	mustContain(t, r.Stderr, "cp -rL")

	vendorDjango(t, work, false)
	f.Alice.Commit(t, work, "vendor django (cp -rL)", nil)
	r = f.Alice.MustGit(t, work, "push", "silver", "main")
	mustContain(t, r.Stderr, "lib/python/sampleapp.pth: /home/alice/sampleapp/src -> ../../src")
	mustContain(t, r.Stderr, "Apply all migrations")
	mustContain(t, r.Stderr, "sampleapp v")
	mustContain(t, r.Stderr, "is live on 2 nodes")

	// createsuperuser through `run`, its password passed with --env.
	out := f.Alice.SSH(t, "", nil, "run", "--env", "DJANGO_SUPERUSER_PASSWORD=tutorial-pw-1",
		"sampleapp", "bin/manage.py", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.test")
	if out.Code != 0 || !strings.Contains(out.Stdout+out.Stderr, "Superuser created successfully") {
		t.Fatalf("createsuperuser: %s", out)
	}
	if strings.Contains(f.Srv.Logs(), "tutorial-pw-1") {
		t.Error("the receiver logged a value passed with run --env")
	}

	n1, n2 := f.Bed.Nodes[0], f.Bed.Nodes[1]
	get := func(node int, path string, cookies ...*http.Cookie) receivertest.HTTPResult {
		req, _ := http.NewRequest("GET", "http://"+host+path, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		return receivertest.Do(t, f.Bed.Nodes[node], req)
	}
	css := get(1, "/static/admin/css/base.css")
	if css.Code != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") || !strings.Contains(css.Body, "DJANGO Admin styles") {
		t.Fatalf("admin CSS on %s: %d %q", n2.Name, css.Code, css.Header.Get("Content-Type"))
	}
	login := get(0, "/admin/login/?next=/admin/")
	m := csrfInput.FindStringSubmatch(login.Body)
	if login.Code != 200 || m == nil {
		t.Fatalf("login page on %s: %d\n%.2000s", n1.Name, login.Code, login.Body)
	}
	var csrf *http.Cookie
	for _, c := range (&http.Response{Header: login.Header}).Cookies() {
		if c.Name == "csrftoken" {
			csrf = c
		}
	}
	if csrf == nil {
		t.Fatalf("no csrftoken cookie: %v", login.Header)
	}
	form := url.Values{"csrfmiddlewaretoken": {m[1]}, "username": {"admin"}, "password": {"tutorial-pw-1"}, "next": {"/admin/"}}
	req, _ := http.NewRequest("POST", "http://"+host+"/admin/login/?next=/admin/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(csrf)
	post := receivertest.Do(t, n1, req)
	var session *http.Cookie
	for _, c := range (&http.Response{Header: post.Header}).Cookies() {
		if c.Name == "sessionid" {
			session = c
		}
	}
	if post.Code != 302 || post.Header.Get("Location") != "/admin/" || session == nil {
		t.Fatalf("login POST: %d %v\n%.2000s", post.Code, post.Header, post.Body)
	}
	// The session lives in PostgreSQL: the other node knows it.
	if home := get(1, "/admin/", session); home.Code != 200 || !strings.Contains(home.Body, "Site administration") {
		t.Fatalf("admin home on %s: %d\n%.2000s", n2.Name, home.Code, home.Body)
	}

	// A start failure shows the exception, not a line from the middle of
	// the traceback.
	f.Alice.Commit(t, work, "break settings", map[string]string{
		"src/sampleapp/settings.py": djangoApp["src/sampleapp/settings.py"] + "import sampleapp_missing_module\n",
	})
	r = f.Alice.Git(t, work, "push", "silver", "main")
	if r.Code == 0 {
		t.Fatalf("a release that cannot start went live:\n%s", r.Stderr)
	}
	mustContain(t, r.Stderr, "ModuleNotFoundError: No module named 'sampleapp_missing_module'")
	if home := get(0, "/admin/", session); home.Code != 200 {
		t.Fatalf("after the failed push the live release answers %d", home.Code)
	}
}
