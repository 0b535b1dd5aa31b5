//go:build race

package proxy

// raceEnabled: the race detector's instrumentation allocates, so
// allocation budgets do not hold under it.
const raceEnabled = true
