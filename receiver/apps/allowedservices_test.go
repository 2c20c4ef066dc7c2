package apps

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitreceive/gitreceive/builder"
	"github.com/gitreceive/gitreceive/nodes/agent"
)

// listSettingCase is a gitreceive.ini holding a list setting and what it
// loads to (nil: the default), or the error it gives.
type listSettingCase struct {
	ini     string
	want    []string
	wantErr string
}

// testListSetting loads each case's gitreceive.ini and checks the list
// field gives; errors must name the file.
func testListSetting(t *testing.T, field func(Config) []string, cases []listSettingCase) {
	t.Helper()
	for _, tc := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(tc.ini), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(dir, "")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), ConfigFileName) {
				t.Errorf("%q: err %v, want %q naming the file", tc.ini, err, tc.wantErr)
			}
			continue
		}
		if got := field(c); err != nil || !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%q: %#v, %v; want %#v", tc.ini, got, err, tc.want)
		}
	}
}

func TestServicesSetting(t *testing.T) {
	testListSetting(t, func(c Config) []string { return c.AllowedServices }, []listSettingCase{
		{"", nil, ""},
		{"services = all\n", nil, ""},
		{"services = none\n", []string{}, ""},
		{"services = postgis, redis files\n", []string{"postgis", "redis", "files"}, ""},
		{"services = redis, redis\n", []string{"redis"}, ""},
		{"services = mongodb\n", nil, `services: "mongodb" is not a service; write all, none, or some of files, mysql`},
		{"services = redis $(id)\n", nil, `"$(id)" is not a service`},
	})
}

func TestCheckAllowedServices(t *testing.T) {
	r := &builder.Release{App: "blog", Branch: "main"}
	for _, tc := range []struct {
		allowed, asked []string
		wantErr        string
	}{
		{nil, []string{"mysql", "redis"}, ""},
		{[]string{"postgis", "files"}, []string{"files", "postgis"}, ""},
		{[]string{"postgis", "files"}, []string{"files", "mysql"}, "app.ini: service.mysql: this receiver does not provide mysql (its operator allows: postgis, files); remove service.mysql, or ask the operator"},
		{[]string{}, []string{"redis"}, "(its operator allows: none)"},
		{[]string{}, nil, ""},
	} {
		a := &Apps{cfg: Config{AllowedServices: tc.allowed}}
		err := a.checkAllowedServices([]*builder.Release{r}, []agent.Spec{{Services: tc.asked}})
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("allowed %v, asked %v: %v, want %q", tc.allowed, tc.asked, err, tc.wantErr)
		}
	}
}
