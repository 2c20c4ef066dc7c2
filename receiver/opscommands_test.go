package receiver

import (
	"testing"

	"github.com/gitreceive/gitreceive/receiver/apps"
)

func TestWorkersCell(t *testing.T) {
	for _, tt := range []struct {
		name string
		row  apps.AppRow
		want string
	}{
		{"nothing to say", apps.AppRow{}, "-"},
		{"crash loops", apps.AppRow{CrashLoops: []apps.CrashLoop{{Worker: "mailer", Node: "a"}, {Worker: "queue", Node: "a"}, {Worker: "mailer", Node: "b"}}},
			"crash loop: mailer on a, b; crash loop: queue on a"},
		{"unreached", apps.AppRow{Unreached: []string{"b", "c"}}, "not reached: b, c"},
		{"both", apps.AppRow{CrashLoops: []apps.CrashLoop{{Worker: "mailer", Node: "a"}}, Unreached: []string{"b"}},
			"crash loop: mailer on a; not reached: b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := workersCell(tt.row); got != tt.want {
				t.Fatalf("workersCell = %q, want %q", got, tt.want)
			}
		})
	}
}
