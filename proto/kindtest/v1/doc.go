// Package kindtestv1 holds a message for tests only (Widget): a kind
// registered outside the built-in registry. Production code never imports it.
package kindtestv1
