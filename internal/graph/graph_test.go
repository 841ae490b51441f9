package graph

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/nsnet/nsnet/internal/topology"
)

func TestWrite(t *testing.T) {
	for _, f := range []string{"000-bridge-masquerade", "001-veth-link", "002-bridge-gateway", "003-routed-two-hosts", "004-docker-modes"} {
		raw, err := os.ReadFile("../../examples/" + f + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		l, err := topology.Parse(f, raw)
		if err != nil {
			t.Fatal(err)
		}
		g := FromFile(l)
		out := map[string]string{}
		for _, format := range Formats {
			var b bytes.Buffer
			if err := Write(&b, g, format); err != nil {
				t.Fatalf("%s %s: %v", f, format, err)
			}
			out[format] = b.String()
		}
		// Every namespace is drawn in every text format.
		for _, h := range l.Hosts {
			for _, ns := range h.Namespaces {
				for _, format := range []string{"dot", "mermaid", "svg"} {
					if !strings.Contains(out[format], ns.Name) {
						t.Errorf("%s %s: namespace %s missing", f, format, ns.Name)
					}
				}
			}
		}
		if strings.Count(out["dot"], "{") != strings.Count(out["dot"], "}") {
			t.Errorf("%s dot: unbalanced braces:\n%s", f, out["dot"])
		}
		d := xml.NewDecoder(strings.NewReader(out["svg"]))
		for {
			if _, err := d.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s svg is not XML: %v", f, err)
			}
		}
		var back Graph
		if err := json.Unmarshal([]byte(out["json"]), &back); err != nil || back.Lab != l.Name {
			t.Errorf("%s json: %v %+v", f, err, back)
		}
	}
}

func TestMultiHost(t *testing.T) {
	raw, _ := os.ReadFile("../../examples/003-routed-two-hosts.yaml")
	l, err := topology.Parse("003", raw)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Write(&b, FromFile(l), "dot")
	for _, want := range []string{`subgraph "cluster_node01"`, `label="node02 198.51.100.3 (FORWARD drop)"`, `host_node01 -- underlay [label="198.51.100.2"]`, `ns_demo01 -- net_node01_pods [label="10.0.1.2"]`, `ns_demo02 -- net_node01_pods [label="auto"]`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dot lacks %q:\n%s", want, b.String())
		}
	}
	if err := Write(&b, FromFile(l), "png"); err == nil || !strings.Contains(err.Error(), "use one of dot, mermaid, svg, json") {
		t.Errorf("unknown format: %v", err)
	}
}
