// Package volume holds the pod volume types the agent supports, each in
// its own file and registered by name (Register), with the hooks of
// Nomad's alloc-runner shape: from the API's volume to what the pod record
// stores (FromAPI), Validate, Prepare before any container starts, Mount
// into a container, TearDown when the pod goes. agent/convert.go and
// agent/runtime call the hooks and know no type; adding a volume type is
// one file here (emptydir.go is the smallest example).
//
// A Volume is stored in the runtime's pod record as {"name": …, "<type>":
// {…}}, the Kubernetes shape, so records written before a type moved here
// still load.
package volume
