// Package ipvsvm boots Debian's kernel (which has IPVS, unlike the build
// host's) under qemu with software emulation, with an initramfs holding
// busybox, the IPVS and nftables modules and a static Go program, and
// collects what the program prints on the serial console. The IPVS test and
// the netproxy benchmark use it.
package ipvsvm
