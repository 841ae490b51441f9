package cliout

import (
	"bytes"
	"testing"
)

func TestError(t *testing.T) {
	cases := []struct {
		name   string
		asJSON bool
		msg    string
		want   string
	}{
		{"text", false, `network "n": no such network`, "nsnet: network \"n\": no such network\n"},
		{"json, object and reason", true, `network "n": no such network`,
			`{"error":"network \"n\": no such network","object":"network \"n\"","reason":"no such network"}` + "\n"},
		{"json, no object", true, "state directory is empty", `{"error":"state directory is empty","reason":"state directory is empty"}` + "\n"},
		{"json, a process's status is no object", true, "etcd exit status 1: gone",
			`{"error":"etcd exit status 1: gone","reason":"etcd exit status 1: gone"}` + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			Error(&b, c.asJSON, c.msg)
			if b.String() != c.want {
				t.Errorf("Error: %q, want %q", b.String(), c.want)
			}
		})
	}
	if got := OneLine("a\n  b\tc "); got != "a b c" {
		t.Errorf("OneLine: %q", got)
	}
}
