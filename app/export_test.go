package app

import "github.com/riverqueue/river"

// RiverConfig is the River configuration a builds its client with.
func RiverConfig(a *App) *river.Config { return a.riverConfig(river.NewWorkers(), nil) }
