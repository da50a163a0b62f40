package agent

// SetCrashPoint makes the engine's workers stop dead (as if killed) where
// crash returns true: phase "intent" is right after a step's intent was
// recorded, "act" right after its act and before its outcome.
func SetCrashPoint(c *Config, crash func(step, phase string) bool) { c.crashAt = crash }

// AdmissionSnooze is admissionSnooze: how long a job turned away by its
// run's limits waits after n snoozes.
var AdmissionSnooze = admissionSnooze
