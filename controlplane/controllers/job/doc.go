// Package job is the Job controller: it runs pods from the template until
// spec.completions of them have Succeeded (or, without completions, until
// one succeeds and none is left running), at most spec.parallelism at a
// time. Pods that Fail are replaced until more than spec.backoffLimit have
// failed (condition Failed, reason BackoffLimitExceeded); a Job running
// longer than activeDeadlineSeconds fails with DeadlineExceeded. Either way
// its running pods are deleted. suspend stops the pods; ttlSecondsAfter-
// Finished deletes a finished Job (and, through ownerReferences, its pods).
//
// The pods' phases drive everything: an agent (or a test) reporting
// Succeeded or Failed is what completes a Job. Pod names are deterministic
// (<job>-<suffix of the lowest free index>), so two leaders cannot both add
// "the next pod".
package job
