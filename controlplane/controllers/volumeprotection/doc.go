// Package volumeprotection is Kubernetes' storage object in-use protection
// (its pvc-protection and pv-protection controllers in one leader loop):
//
//   - Every PersistentVolumeClaim carries the finalizer
//     kubernetes.io/pvc-protection. While a pod that has not terminated
//     (phase neither Succeeded nor Failed, scheduled or not) names the claim
//     in its volumes, a deleted claim stays, marked for deletion; once no
//     such pod is left the finalizer is dropped and the claim goes.
//   - Every PersistentVolume carries kubernetes.io/pv-protection. A deleted
//     volume stays while it is Bound; once it is not (its claim is gone and
//     the volume controller marked it Released, or it was never bound) the
//     finalizer is dropped.
//
// The API's StorageObjectInUseProtection admission adds the finalizers to
// every new claim and volume; this loop adds them to objects that lack
// them (stored before, or a finalizer removed by hand), as Kubernetes'
// controllers also do.
package volumeprotection
