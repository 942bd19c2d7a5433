// Package network wires pod network namespaces with CNI (libcni v1.3.1).
//
// It owns: creating and deleting the persistent namespace files a pod sandbox
// is made of (net, and for the runtime also ipc/uts), and calling the CNI
// plugins on them. By default it writes no files: it uses a built-in config
// list (bridge with gateway + host-local IPAM from the node's pod CIDR +
// portmap for hostPort, left out for pods without host ports). Loopback is
// set up by CreateNetns itself over netlink, not by the CNI loopback plugin
// (see CreateNetns for why). If the
// configured CNI config dir holds a *.conflist, the first one (sorted by
// name) replaces the built-in list, so users can plug other CNI plugins.
// Plugins are looked up in Config.PluginDirs (Debian's
// containernetworking-plugins installs them in /usr/lib/cni).
//
// EnsureMasquerade replaces the bridge plugin's ipMasq for multi-node pod
// networks: one nftables rule masquerades only pod traffic that leaves the
// cluster range, so pods see each other's own IPs across nodes. The VXLAN
// overlay that carries that traffic is the subpackage overlay.
package network
