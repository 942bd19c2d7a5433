// Package testutil holds the few helpers every Skiff test shares. It imports
// nothing from the project, so any package's tests may use it.
package testutil
