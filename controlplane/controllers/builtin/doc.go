// Package builtin lists every leader-only loop Skiff runs: the scheduler
// and each controller, one line each. Whoever wires a control node (ctl,
// integration/cptest) calls Register on a fresh controllers.Registry.
package builtin
