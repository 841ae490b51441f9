package graph

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// The SVG layout: a column per host, its networks on the left, its
// namespaces and TAPs on the right with their addresses inside, an edge
// from each membership to its network; the underlay a bar below every
// column, links drawn straight between their ends.
const (
	colW     = 440
	colGap   = 40
	netW     = 170
	boxW     = 190
	lineH    = 14
	margin   = 20
	headH    = 34
	rowGap   = 16
	netH     = 44
	fontAttr = `font-family="Helvetica,Arial,sans-serif" font-size="11"`
)

type box struct{ x, y, w, h int }

func (b box) midY() int  { return b.y + b.h/2 }
func (b box) right() int { return b.x + b.w }

func svg(w io.Writer, g Graph) error {
	var body strings.Builder
	nets := map[string]box{} // host/net
	ends := map[string]box{} // namespace, host or TAP name
	height := 0
	for i, h := range g.Hosts {
		x0 := margin + i*(colW+colGap)
		y := margin + headH + rowGap
		for _, n := range h.Networks {
			b := box{x0 + 10, y, netW, netH}
			nets[h.Name+"/"+n.Name] = b
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" rx="18" fill="#dde8f8" stroke="#3a5a8c"/>`+"\n", b.x, b.y, b.w, b.h)
			text(&body, b.x+b.w/2, b.y+18, "middle", true, n.Name)
			text(&body, b.x+b.w/2, b.y+32, "middle", false, n.Driver+" "+strings.Join(n.Subnets, " "))
			y += netH + rowGap
		}
		netBottom := y
		y = margin + headH + rowGap
		for _, ns := range h.Namespaces {
			lines := []string{}
			for _, mb := range ns.Members {
				lines = append(lines, mb.Network+": "+memberLabel(mb))
			}
			if ns.Share != "" {
				lines = append(lines, "shares "+ns.Share)
			}
			b := box{x0 + colW - boxW - 10, y, boxW, 22 + lineH*len(lines)}
			ends[ns.Name] = b
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" stroke="#333333"/>`+"\n", b.x, b.y, b.w, b.h)
			text(&body, b.x+8, b.y+15, "start", true, ns.Name)
			for j, l := range lines {
				text(&body, b.x+8, b.y+15+lineH*(j+1), "start", false, l)
			}
			for _, mb := range ns.Members {
				if nb, ok := nets[h.Name+"/"+mb.Network]; ok {
					fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#3a5a8c"/>`+"\n", nb.right(), nb.midY(), b.x, b.midY())
				}
			}
			y += b.h + rowGap
		}
		for _, t := range h.Taps {
			b := box{x0 + colW - boxW - 10, y, boxW, 36}
			ends[t.Name] = b
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff4dd" stroke="#8c6a3a"/>`+"\n", b.x, b.y, b.w, b.h)
			text(&body, b.x+8, b.y+15, "start", true, "tap "+t.Name)
			text(&body, b.x+8, b.y+29, "start", false, t.Network+": "+orDefault(t.IP, "auto"))
			if nb, ok := nets[h.Name+"/"+t.Network]; ok {
				fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#8c6a3a"/>`+"\n", nb.right(), nb.midY(), b.x, b.midY())
			}
			y += b.h + rowGap
		}
		bottom := max(y, netBottom, margin+headH+rowGap+netH)
		name := h.Name
		if name == "" {
			name = "host"
		}
		ends[name] = box{x0, margin, colW, headH}
		fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#777777" stroke-dasharray="4 3"/>`+"\n", x0, margin, colW, bottom-margin)
		label := hostLabel(h)
		if h.Name == "" {
			label = "host (the lab's own)"
		}
		text(&body, x0+10, margin+20, "start", true, label)
		height = max(height, bottom)
	}
	width := margin*2 + len(g.Hosts)*(colW+colGap) - colGap
	if g.Underlay != "" {
		y := height + 30
		fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="24" fill="#e8e8e8" stroke="#555555"/>`+"\n", margin, y, width-2*margin)
		text(&body, width/2, y+16, "middle", true, "underlay "+g.Underlay)
		for i, h := range g.Hosts {
			x := margin + i*(colW+colGap) + colW/2
			fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555555" stroke-width="2"/>`+"\n", x, height, x, y)
			text(&body, x+6, height+18, "start", false, h.Underlay)
		}
		height = y + 24
	}
	for _, k := range g.Links {
		a, okA := ends[k.A]
		b, okB := ends[k.B]
		if !okA || !okB {
			continue
		}
		x1, y1, x2, y2 := a.x+a.w/2, a.y+a.h, b.x+b.w/2, b.y
		if a.y > b.y {
			x1, y1, x2, y2 = a.x+a.w/2, a.y, b.x+b.w/2, b.y+b.h
		}
		if a.y == b.y {
			x1, y1, x2, y2 = a.right(), a.midY(), b.x, b.midY()
		}
		fmt.Fprintf(&body, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#b05000" stroke-width="2"/>`+"\n", x1, y1, x2, y2)
		text(&body, (x1+x2)/2+4, (y1+y2)/2, "start", false, orDefault(linkLabel(k), "link"))
	}
	height += margin
	_, err := fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n"+
		`<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n"+
		`<title>lab %s</title>`+"\n%s</svg>\n", width, height, width, height, fontAttr, html.EscapeString(g.Lab), body.String())
	return err
}

func text(b *strings.Builder, x, y int, anchor string, bold bool, s string) {
	weight := ""
	if bold {
		weight = ` font-weight="bold"`
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, weight, html.EscapeString(s))
}
