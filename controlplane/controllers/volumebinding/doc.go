// Package volumebinding is the persistent volume controller: it binds
// PersistentVolumeClaims to PersistentVolumes and runs the built-in local
// provisioner.
//
//   - A claim without spec.storageClassName gets the default class (the
//     StorageClass annotated storageclass.kubernetes.io/is-default-class).
//   - A claim is bound to the smallest Available volume of its class whose
//     capacity is at least the request and whose access modes include the
//     claim's (BestVolume), or to the volume it names (spec.volumeName) or
//     that names it (spec.claimRef). The volume is written first (claimRef
//     with the claim's uid), then the claim (spec.volumeName), then both
//     statuses Bound.
//   - A class with provisioner skiff.io/local and WaitForFirstConsumer
//     binding: once a pod using the claim is bound to a node, the claim is
//     annotated volume.kubernetes.io/selected-node with that node and a
//     volume pvc-<claim uid> is made there: a "local" directory under the
//     node agent's volume directory (its Node's skiff.io/local-volume-dir
//     annotation), with node affinity to the node, so the claim's pods
//     follow it.
//   - A claim's class is its volume.beta.kubernetes.io/storage-class
//     annotation if it has one, else spec.storageClassName (as Kubernetes
//     reads it); a class whose provisioner Skiff does not run leaves the
//     claim Pending with an ExternalProvisioning event.
//   - A provisioned volume carries volume.kubernetes.io/selected-node (its
//     node) and the finalizer external-provisioner.volume.kubernetes.io/
//     finalizer.
//   - When a bound claim is gone (its in-use protection, package
//     volumeprotection, lets it go only once no pod uses it), its volume is
//     Released: reclaim policy Retain keeps it Released with its data;
//     Delete deletes the volume object, which then waits for the agent of
//     its node to remove the directory and drop the finalizer (only that
//     node owns the disk; the agent watches the volumes labelled
//     skiff.io/local-volume-node with its name, which every provisioned
//     volume carries); if that node is removed the controller drops the
//     finalizer itself. It never waits silently: on a node that is not
//     Ready, or past Config.AgentTimeout on a Ready one, the volume is
//     marked Failed with a VolumeFailedDelete event saying why.
package volumebinding
