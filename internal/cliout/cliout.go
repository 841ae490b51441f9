// Package cliout writes what nsnet's programs (nsnet and nsnet-cluster)
// print: a result as a table or as JSON, and an error as one line that a
// person or a script can read.
package cliout

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Print writes v as indented JSON, or has text write it as a table whose
// columns are separated by tabs.
func Print(w io.Writer, asJSON bool, v any, text func(io.Writer)) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	text(tw)
	return tw.Flush()
}

// OneLine folds a message's whitespace, newlines included, to single
// spaces.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Error writes an error message on a line of its own: "nsnet: MSG", or
// for scripts that asked for JSON one object with the whole message, and
// the object it names and the reason, split where the message names them
// ("network \"n\": no such network").
func Error(w io.Writer, asJSON bool, msg string) {
	if !asJSON {
		fmt.Fprintln(w, "nsnet: "+msg)
		return
	}
	e := struct {
		Error  string `json:"error"`
		Object string `json:"object,omitempty"`
		Reason string `json:"reason"`
	}{Error: msg, Reason: msg}
	if obj, reason, ok := strings.Cut(msg, ": "); ok && !strings.Contains(obj, " status ") {
		e.Object, e.Reason = obj, reason
	}
	raw, _ := json.Marshal(e)
	fmt.Fprintln(w, string(raw))
}
