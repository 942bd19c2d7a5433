package dashboardbrowser

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/skiffhq/skiff/controlplane/dashboard/dashboardtest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

// step runs browser actions with a deadline; on failure it saves a
// screenshot, prints its path and fails the test.
type browserT struct {
	t    *testing.T
	tab  context.Context
	dir  string
	name string
}

func (b *browserT) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

// until waits for a JavaScript condition on the page.
func (b *browserT) until(what string, timeout time.Duration, js string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, timeout)
	defer cancel()
	if err := dashboardtest.PollPage(ctx, js); err != nil {
		b.fail(what, err)
	}
}

func (b *browserT) eval(what, js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.fail(what, err)
	}
	return v
}

func (b *browserT) fail(what string, err error) {
	b.t.Helper()
	shot := dashboardtest.Screenshot(b.tab, b.dir, b.name+"-"+strings.NewReplacer(" ", "-", "'", "", "/", "-").Replace(what))
	body := "(page unreadable)"
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	if v, e := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 1500) : ""`)); e == nil {
		body = v
	}
	b.t.Fatalf("browser (%s): %s: %v\nscreenshot: %s\npage text:\n%s", b.name, what, err, shot, body)
}

func browser(t *testing.T, e *dashboardtest.Env, name, dir string) *browserT {
	t.Helper()
	tab, cancel, err := e.Browser(context.Background(), t.TempDir())
	if errors.Is(err, dashboardtest.ErrNoChromium) {
		t.Skipf("%v: the browser test needs it", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return &browserT{t: t, tab: tab, dir: dir, name: name}
}

// An admin logs in with a token, sees the nodes, scales a Deployment from
// the page and sees the new pods appear in another open page without a
// reload, opens a pod's logs; a viewer's scale is refused with the API's
// error and changes nothing.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := dashboardtest.Chromium(); err != nil {
		t.Skipf("%v: the browser test needs it", err)
	}
	e := dashboardtest.Start(t, dashboardtest.Options{HollowNodes: 3})
	dir := dashboardtest.ArtifactsDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := client.Create(ctx, e.Cluster.Admin(), dashboardtest.NewDeployment("web", 2)); err != nil {
		t.Fatal(err)
	}

	admin := browser(t, e, "admin", dir)
	link, err := e.LoginURL(dashboardtest.Admin)
	if err != nil {
		t.Fatal(err)
	}
	admin.do("log in with the token", 20*time.Second, chromedp.Navigate(link))
	admin.until("cluster page after login", 20*time.Second, `document.getElementById("cluster-summary") !== null && document.getElementById("who").textContent === "user:alice"`)

	admin.do("open the nodes page", 20*time.Second, chromedp.Navigate(e.URL+"/nodes"))
	admin.until("three Ready nodes with usage bars", 30*time.Second,
		`["hollow-0","hollow-1","hollow-2"].every(n => { const r = document.getElementById("n/" + n); return r && r.children[1].textContent === "True" && r.querySelector("svg.bar") })`)

	// The pods page stays open in a second tab, with a marker that a
	// reload would wipe.
	podsTab, cancelPods := chromedp.NewContext(admin.tab)
	defer cancelPods()
	if err := chromedp.Do(podsTab); err != nil { // opens the tab; no deadline here: it would close the tab
		t.Fatal(err)
	}
	pods := &browserT{t: t, tab: podsTab, dir: dir, name: "admin-pods"}
	pods.do("open the pods page", 20*time.Second, chromedp.Navigate(e.URL+"/pods"))
	pods.until("two web pods listed, live stream connected", 30*time.Second,
		`document.body.dataset.live === "1" && document.querySelectorAll('tr[id^="p/default/web-"]').length === 2`)
	pods.eval("mark the page", `window.notReloaded = "yes"; "ok"`)

	admin.do("open the workloads page", 20*time.Second, chromedp.Navigate(e.URL+"/workloads"))
	admin.until("web's row, live", 20*time.Second, `document.body.dataset.live === "1" && document.getElementById("d/default/web") !== null`)
	row := `tr[id="d/default/web"]`
	admin.do("scale web to 5 from the page", 20*time.Second,
		chromedp.SetValue(chromedp.CSS(row+` input[name=replicas]`), "5"),
		chromedp.Click(chromedp.CSS(row+` button.scale`)))
	admin.until("the API's answer in the flash", 20*time.Second, `document.getElementById("flash").textContent.includes("scaled to 5")`)
	admin.until("the row shows 5 of 5 ready without reload", 60*time.Second,
		`(() => { const r = document.getElementById("d/default/web"); return r && r.dataset.replicas === "5" && r.children[3].textContent.trim() === "5 / 5"; })()`)

	pods.until("five web pods Running in the pods tab, without reload", 60*time.Second,
		`window.notReloaded === "yes" && [...document.querySelectorAll('tr[id^="p/default/web-"]')].filter(r => r.dataset.phase === "Running").length === 5`)

	// A pod's logs: the pod page opens the container's log stream.
	href := pods.eval("a pod's link", `document.querySelector('tr[id^="p/default/web-"] a').href`)
	pods.do("open a pod's page", 20*time.Second, chromedp.Navigate(href))
	pods.until("the pod page with its container", 20*time.Second, `document.body.dataset.live === "1" && document.querySelector("button.logs") !== null`)
	pods.do("open the container's logs", 10*time.Second, chromedp.Click(chromedp.CSS(`button.logs`)))
	// The pane shows the API relay's answer: hollow nodes serve no stream
	// port, and the test's API servers are not given a way to reach one.
	pods.until("the log pane shows the API relay's answer", 20*time.Second,
		`(t => t.includes("does not relay streams to nodes") || t.includes("stream port"))(document.getElementById("logs").textContent)`)

	// A viewer sees the same page; the API refuses its scale.
	viewer := browser(t, e, "viewer", dir)
	link, err = e.LoginURL(dashboardtest.Viewer)
	if err != nil {
		t.Fatal(err)
	}
	viewer.do("viewer logs in", 20*time.Second, chromedp.Navigate(link), chromedp.Navigate(e.URL+"/workloads"))
	viewer.until("web's row for the viewer", 20*time.Second, `document.body.dataset.live === "1" && document.getElementById("d/default/web") !== null`)
	viewer.do("viewer scales web to 1", 20*time.Second,
		chromedp.SetValue(chromedp.CSS(row+` input[name=replicas]`), "1"),
		chromedp.Click(chromedp.CSS(row+` button.scale`)))
	viewer.until("the API's refusal in the flash", 20*time.Second,
		`(() => { const f = document.getElementById("flash"); return f.className === "err" && f.textContent.includes("forbidden") && f.textContent.includes("user:bob"); })()`)
	d, err := client.Get[*apiv1.Deployment](ctx, e.Cluster.Admin(), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if n := d.GetSpec().GetReplicas(); n != 5 {
		t.Fatalf("after the viewer's refused scale web has %d replicas, want 5", n)
	}
}
