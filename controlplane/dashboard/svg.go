package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Pictures are SVG drawn here, on the server: no chart library, no script.
// Colours are classes (style.css), so the page's CSP needs no inline style.

// bar draws used out of total as a horizontal bar.
func bar(used, total int64, label string) template.HTML {
	const w = 120
	frac := 0.0
	if total > 0 {
		frac = float64(used) / float64(total)
	}
	cls := "ok"
	switch {
	case frac > 0.9:
		cls = "hot"
	case frac > 0.7:
		cls = "warm"
	}
	fill := int(min(frac, 1) * w)
	return template.HTML(fmt.Sprintf(`<svg class="bar" width="%d" height="12" role="img" aria-label="%s"><rect class="track" width="%d" height="12" rx="2"/><rect class="%s" width="%d" height="12" rx="2"/></svg>`,
		w, template.HTMLEscapeString(label), w, cls, fill))
}

// rollout draws a Deployment's pods: available, updated but not yet
// available, and old ones still running, out of max(desired, present).
func rollout(desired, updated, available, total int32) template.HTML {
	const w = 160
	scale := max(desired, total, 1)
	x := func(n int32) int { return int(float64(n) / float64(scale) * w) }
	avail := min(available, updated)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="rollout" width="%d" height="14" role="img" aria-label="%d of %d available, %d updated, %d present">`, w, available, desired, updated, total)
	fmt.Fprintf(&b, `<rect class="track" width="%d" height="14" rx="2"/>`, w)
	fmt.Fprintf(&b, `<rect class="ok" width="%d" height="14"/>`, x(avail))
	fmt.Fprintf(&b, `<rect class="warm" x="%d" width="%d" height="14"/>`, x(avail), x(updated-avail))
	if old := total - updated; old > 0 {
		fmt.Fprintf(&b, `<rect class="old" x="%d" width="%d" height="14"/>`, x(updated), x(old))
	}
	if desired < scale {
		fmt.Fprintf(&b, `<line class="target" x1="%d" x2="%d" y1="0" y2="14"/>`, x(desired), x(desired))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// latencyBounds are the pod-start histogram's bucket upper bounds.
var latencyBounds = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute}

// histogram draws how long pods took from creation to Ready.
func histogram(latencies []time.Duration) template.HTML {
	counts := make([]int, len(latencyBounds)+1)
	for _, l := range latencies {
		i := 0
		for i < len(latencyBounds) && l > latencyBounds[i] {
			i++
		}
		counts[i]++
	}
	peak := 1
	for _, c := range counts {
		peak = max(peak, c)
	}
	const bw, gap, h, pad = 40, 6, 90, 12 // pad: room for the outer labels
	w := len(counts)*(bw+gap) + 2*pad
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="hist" width="%d" height="%d" role="img" aria-label="pod start latency histogram of %d pods">`, w, h+30, len(latencies))
	for i, c := range counts {
		bh := c * h / peak
		x := pad + i*(bw+gap)
		label := "> " + short(latencyBounds[len(latencyBounds)-1])
		if i < len(latencyBounds) {
			label = "≤ " + short(latencyBounds[i])
		}
		fmt.Fprintf(&b, `<rect class="ok" x="%d" y="%d" width="%d" height="%d"/>`, x, h-bh+12, bw, bh)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%d</text>`, x+bw/2, h-bh+10, c)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, x+bw/2, h+26, label)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func short(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm", int(d.Minutes()))
}
