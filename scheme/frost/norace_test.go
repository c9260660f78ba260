//go:build !race

package frost

const raceEnabled = false
