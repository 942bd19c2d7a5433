// Package dashboardbrowser tests the web dashboard in a real browser:
// Debian's chromium, headless, driven by chromedp, against a real control
// plane with hollow nodes (controlplane/dashboard/dashboardtest).
package dashboardbrowser
