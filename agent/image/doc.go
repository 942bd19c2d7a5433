// Package image pulls OCI and Docker images from registries and turns them
// into container root filesystems.
//
// It owns: resolving references (tag or digest; multi-arch index →
// linux/amd64) with github.com/google/go-containerregistry, registry
// credentials (anonymous, or basic auth from a dockerconfigjson Secret),
// the rule that plain HTTP is used only for registries listed as insecure,
// a content-addressed layer store (one unpacked directory per layer diffID,
// shared by all images and containers; whiteouts become overlayfs
// whiteouts), one overlayfs rootfs per container, imagePullPolicy, pull
// progress, and garbage collection of unused images and layers.
package image
