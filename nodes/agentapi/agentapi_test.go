package agentapi

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/services"
)

func TestRoundTrip(t *testing.T) {
	shop := At("shop", "main")
	v3 := shop.Release(3)
	tests := []struct {
		req  Request
		argv string
	}{
		{Manifest{Target: shop}, "manifest shop main"},
		{Receive{Release: v3}, "receive shop main 3"},
		{Receive{Release: v3, Full: true}, "receive shop main 3 --full"},
		{Start{Release: v3}, "start shop main 3"},
		{Start{Release: v3, Stored: true}, "start shop main 3 --stored"},
		{Prepare{Release: v3}, "prepare shop main 3"},
		{Activate{Release: v3}, "activate shop main 3"},
		{Deactivate{Release: v3}, "deactivate shop main 3"},
		{Abort{Release: v3}, "abort shop main 3"},
		{Releases{Target: shop}, "releases shop main"},
		{Logs{Target: shop, Lines: 50}, "logs shop main 50"},
		{Logs{Target: shop, Lines: 0, Follow: true}, "logs shop main 0 -f"},
		{Logs{Target: shop, Lines: 5, Process: "mailer"}, "logs shop main 5 --process=mailer"},
		{Logs{Target: shop, Lines: 5, Follow: true, Process: "mailer"}, "logs shop main 5 -f --process=mailer"},
		{Ps{Target: shop}, "ps shop main"},
		{Restart{Target: shop}, "restart shop main"},
		{Restart{Target: shop, Names: []string{"mailer", "queue"}}, "restart shop main mailer queue"},
		{CronRun{Target: shop, Name: "nightly"}, "cron-run shop main nightly"},
		{SingletonsHold{Target: shop, On: true}, "singletons-hold shop main on"},
		{SingletonsHold{Target: shop}, "singletons-hold shop main off"},
		{Disable{Target: shop}, "disable shop main"},
		{Enable{Target: shop}, "enable shop main"},
		{Destroy{Target: shop}, "destroy shop main"},
		{Run{Target: shop, Script: "bin/x"}, "run shop main -- bin/x"},
		{Run{Target: shop, TTY: true, Env: []string{"A=1", "B=x y"}, Script: "bin/x", Args: []string{"--", "-f"}},
			"run shop main --tty --env A=1 --env B=x y -- bin/x -- -f"},
		{Service{Op: "install", Service: "redis"}, "service install redis"},
		{Service{Op: "client", Service: "mysql", Platform: "php"}, "service client mysql php"},
		{Service{Op: "provision", Service: "postgresql", Target: shop, Listen: []string{"10.0.0.2"}},
			"service provision postgresql shop main --listen=10.0.0.2"},
		{Service{Op: "backup", Service: "files", Target: shop}, "service backup files shop main"},
		{Status{}, "status"},
		{Setup{Packages: []string{"python3-lxml"}}, "setup python3-lxml"},
		{Packages{Packages: []string{"python3-lxml", "php8.2-gd"}}, "packages python3-lxml php8.2-gd"},
		{Challenge{Op: ChallengePut, Token: "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"}, "challenge put evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"},
		{Challenge{Op: ChallengeRemove, Token: "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ"}, "challenge remove evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ"},
		{Cert{Op: CertStage, Host: "app.example.test", ID: "0123456789abcdef"}, "cert stage app.example.test 0123456789abcdef"},
		{Cert{Op: CertTest, Host: "app.example.test", ID: "0123456789abcdef"}, "cert test app.example.test 0123456789abcdef"},
		{Cert{Op: CertCommit, Host: "app.example.test", ID: "0123456789abcdef"}, "cert commit app.example.test 0123456789abcdef"},
		{Cert{Op: CertUnstage, Host: "app.example.test", ID: "0123456789abcdef"}, "cert unstage app.example.test 0123456789abcdef"},
		{Cert{Op: CertRemove, Host: "app.example.test"}, "cert remove app.example.test"},
		{Cert{Op: CertList}, "cert list"},
	}
	for _, tt := range tests {
		argv := tt.req.Argv()
		if got := strings.Join(argv, " "); got != tt.argv {
			t.Errorf("%#v.Argv() = %q, want %q", tt.req, got, tt.argv)
		}
		back, err := Parse(argv)
		if err != nil {
			t.Errorf("Parse(%q): %v", argv, err)
			continue
		}
		if !reflect.DeepEqual(back, tt.req) {
			t.Errorf("Parse(%q) = %#v, want %#v", argv, back, tt.req)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		argv string
		want string
	}{
		{"", "usage:"},
		{"frobnicate", `unknown verb "frobnicate"`},
		{"manifest shop", "usage:"},
		{"challenge put short", "invalid ACME token"},
		{"challenge put ../../etc/passwd-xxxxxxxxxxxx", "invalid ACME token"},
		{"challenge get evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ", "usage:"},
		{"cert stage app.example.test", "usage:"},
		{"cert stage ../x 0123456789abcdef", "invalid host"},
		{"cert commit app.example.test 0123456789ABCDEF", "invalid certificate ID"},
		{"cert remove app.example.test 0123456789abcdef", "usage:"},
		{"cert list x", "usage:"},
		{"cert renew app.example.test", "usage:"},
		{"manifest Shop; main", `invalid app "Shop;" or instance "main"`},
		{"releases shop ../x", "invalid app"},
		{"activate shop main 0", `invalid release number "0"`},
		{"activate shop main x", "invalid release number"},
		{"receive shop main 2 --stored", "usage:"},
		{"start shop main 2 --full", "usage:"},
		{"logs shop main 100001", "invalid line count"},
		{"logs shop main -1", "invalid line count"},
		{"logs shop main 5 --follow", "usage:"},
		{"logs shop main 5 --process=../x", "invalid process name"},
		{"logs shop main 5 --process=a --process=b", "usage:"},
		{"ps shop", "usage:"},
		{"restart shop main Mailer", "invalid process name"},
		{"cron-run shop main", "usage:"},
		{"singletons-hold shop main yes", "usage:"},
		{"cron-run shop main a;b", "invalid process name"},
		{"run shop main bin/x", "usage:"},
		{"run shop main --env 1A=x -- bin/x", "1A"},
		{"service client redis ruby", "usage:"},
		{"service provision redis shop", "usage:"},
		{"service provision redis shop ../main", "invalid app or instance name"},
		{"service explode redis", "usage:"},
		{"status now", "usage:"},
		{"packages", "usage:"},
		{"setup python3-x;rm", "invalid package name"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.Fields(tt.argv))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.argv, err, tt.want)
		}
	}
}

// The agent reads --listen with package services.
func TestListenFlagIsServices(t *testing.T) {
	if got, want := listenFlag+"a", services.ListenArg("a"); got != want {
		t.Fatalf("listen flag %q, services says %q", got, want)
	}
}

// FuzzParse: any argv parses without panicking, and what parses gives the
// same argv back, whose names are all valid.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"manifest shop main", "run shop main --tty --env A=1 -- bin/x a", "logs shop main 5 -f",
		"service provision redis shop main --listen=10.0.0.1", "service client mysql php", "packages php8.2-gd", "setup"} {
		f.Add(strings.ReplaceAll(s, " ", "\x00"))
	}
	f.Fuzz(func(t *testing.T, joined string) {
		argv := strings.Split(joined, "\x00")
		req, err := Parse(argv)
		if err != nil {
			return
		}
		again, err := Parse(req.Argv())
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, whose Argv %q does not parse: %v", argv, req, req.Argv(), err)
		}
		if !reflect.DeepEqual(again.Argv(), req.Argv()) {
			t.Fatalf("Argv not stable: %q then %q", req.Argv(), again.Argv())
		}
	})
}
