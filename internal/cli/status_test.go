package cli

import (
	"strings"
	"testing"

	"github.com/tchsm/tchsm/client"
)

// TestKeyReport: what tchsm status says about the nodes' key sets after node-3 was restored
// from a backup that predates key "new" (dealt since) and the deletion of key "old".
func TestKeyReport(t *testing.T) {
	node := func(id string, ok bool, keys ...string) client.NodeStatus {
		return client.NodeStatus{ID: id, OK: ok, Keys: keys}
	}
	cases := []struct {
		name string
		st   []client.NodeStatus
		want []string // lines, in order; "" for none
	}{
		{"all agree", []client.NodeStatus{node("node-1", true, "a"), node("node-2", true, "a"), node("node-3", true, "a"),
			node("node-4", true, "a"), node("node-5", true, "a")}, nil},
		{"restored node", []client.NodeStatus{node("node-1", true, "a", "new"), node("node-2", true, "a", "new"),
			node("node-3", true, "a", "old"), node("node-4", true, "a", "new"), node("node-5", true, "a", "new")}, []string{
			"key old is held only by node-3 (1 of the 3 needed to sign): deleted on the other nodes after the backup it was restored from? delete it there too: tchsm keys delete old",
			"node-3 lacks 1 key(s): new",
			"  (a share still waiting",
		}},
		// Two nodes down: the key the three others lack could be held by the silent ones and
		// the one holder: it is not called an orphan, only missing.
		{"too few answer to tell", []client.NodeStatus{node("node-1", false), node("node-2", false),
			node("node-3", true, "a", "x"), node("node-4", true, "a"), node("node-5", true, "a")}, []string{
			"node-4 lacks 1 key(s): x",
			"node-5 lacks 1 key(s): x",
			"  (a share",
		}},
		{"two restored nodes hold a deleted key", []client.NodeStatus{node("node-1", true, "old"), node("node-2", true, "old"),
			node("node-3", true), node("node-4", true), node("node-5", true)}, []string{
			"key old is held only by node-1, node-2 (2 of the 3 needed to sign): deleted on the other nodes after the backup they were restored from?",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := keyReport(3, 5, tc.st)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d:\n got %s\nwant %s…", i, got[i], w)
				}
			}
		})
	}
}

func TestVersionReport(t *testing.T) {
	same := []client.NodeStatus{{ID: "node-1", OK: true, Version: "v1", Protocol: 2}, {ID: "node-2", OK: true, Version: "v1", Protocol: 2},
		{ID: "node-3", Version: "v0"}}
	if got := versionReport(same); got != "" {
		t.Fatalf("one release up: %q", got)
	}
	mixed := append(same, client.NodeStatus{ID: "node-4", OK: true, Version: "v0.9.0", Protocol: 1})
	want := "nodes run different releases (an upgrade in progress? docs/operations/upgrade.md): v0.9.0 (protocol 1): node-4; v1 (protocol 2): node-1 node-2"
	if got := versionReport(mixed); got != want {
		t.Fatalf("mixed:\n%s\nwant\n%s", got, want)
	}
}
