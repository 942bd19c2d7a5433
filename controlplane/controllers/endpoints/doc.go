// Package endpoints keeps an Endpoints object per Service with a selector:
// the pods matching the selector that have an IP, ready ones under
// addresses and the rest under notReadyAddresses (all ready with
// publishNotReadyAddresses), grouped into subsets by their resolved ports.
// A Service port's targetPort is a number or the name of a container port,
// looked up in each pod, so pods of one Service may serve on different
// ports. Services without a selector are left to whoever manages their
// Endpoints; the Endpoints of a deleted Service are deleted.
package endpoints
