package netproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/google/nftables"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpReadBuffer is the buffer each recvmsg of a set dump gets. The kernel
// sizes every later chunk of a dump after the largest buffer the socket's
// reader has passed to recvmsg (up to 32 KiB, netlink_recvmsg records it).
const dumpReadBuffer = 64 << 10

// setDumper reads sets back (see dumpElements); the socket is opened at
// first use.
type setDumper struct {
	ns   netns.NsHandle
	conn *mdnetlink.Conn
}

func (d *setDumper) close() {
	if d.conn != nil {
		d.conn.Close()
	}
}

// dumpElements reads the elements of one of the table's sets: key -> value
// (chain name for verdict maps, data bytes for data maps, "" for sets).
//
// It uses its own socket and receive loop instead of google/nftables'
// GetSetElements: the kernel dumps a hash set by walking it from the start
// for every chunk of the reply (nft_rhash_walk skips what earlier chunks
// held), so a dump costs elements × chunks. mdlayher/netlink reads with a
// 4 KiB buffer, which keeps chunks at 4 KiB: reading 100,000 endpoints back
// took ~6 s. Reading with a large buffer makes the chunks 32 KiB.
func (d *setDumper) dumpElements(set *nftables.Set) (map[string]string, error) {
	if d.conn == nil {
		c, err := mdnetlink.Dial(unix.NETLINK_NETFILTER, &mdnetlink.Config{NetNS: int(d.ns)})
		if err != nil {
			return nil, fmt.Errorf("nftables dump socket: %w", err)
		}
		d.conn = c
	}
	attrs, err := mdnetlink.MarshalAttributes([]mdnetlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(set.Table.Name + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set.Name + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	req, err := d.conn.Send(mdnetlink.Message{
		Header: mdnetlink.Header{
			Type:  mdnetlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: mdnetlink.Request | mdnetlink.Dump,
		},
		// struct nfgenmsg: family, version, resource id
		Data: append([]byte{byte(set.Table.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", set.Name, err)
	}
	raw, err := d.conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	verdicts := set.IsMap && set.DataType.Name == nftables.TypeVerdict.Name
	out := map[string]string{}
	buf := make([]byte, dumpReadBuffer)
	for {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		}); err != nil {
			return nil, err
		}
		if rerr != nil {
			return nil, fmt.Errorf("read %s: %w", set.Name, rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", set.Name, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Header.Sequence {
				continue // a late answer to something else
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("read %s: %w", set.Name, unix.Errno(-errno))
					}
				}
				return out, nil
			}
			if len(m.Data) < 4 {
				continue
			}
			if err := decodeElements(m.Data[4:], verdicts, out); err != nil {
				return nil, fmt.Errorf("read %s: %w", set.Name, err)
			}
		}
	}
}

// decodeElements adds the elements of one NFT_MSG_NEWSETELEM message.
func decodeElements(b []byte, verdicts bool, out map[string]string) error {
	ad, err := mdnetlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		list, err := mdnetlink.NewAttributeDecoder(ad.Bytes())
		if err != nil {
			return err
		}
		for list.Next() {
			if list.Type() != unix.NFTA_LIST_ELEM {
				continue
			}
			key, val, err := decodeElement(list.Bytes(), verdicts)
			if err != nil {
				return err
			}
			out[key] = val
		}
		if err := list.Err(); err != nil {
			return err
		}
	}
	return ad.Err()
}

// decodeElement returns an element's key and its value (data bytes or the
// chain of a verdict).
func decodeElement(b []byte, verdicts bool) (key, val string, err error) {
	ad, err := mdnetlink.NewAttributeDecoder(b)
	if err != nil {
		return "", "", err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			key, err = nestedValue(ad.Bytes(), unix.NFTA_DATA_VALUE)
		case unix.NFTA_SET_ELEM_DATA:
			if verdicts {
				var v string
				if v, err = nestedValue(ad.Bytes(), unix.NFTA_DATA_VERDICT); err == nil {
					val, err = nestedValue([]byte(v), unix.NFTA_VERDICT_CHAIN)
					val = strings.TrimRight(val, "\x00")
				}
			} else {
				val, err = nestedValue(ad.Bytes(), unix.NFTA_DATA_VALUE)
			}
		}
		if err != nil {
			return "", "", err
		}
	}
	if key == "" {
		return "", "", errors.New("set element without a key")
	}
	return key, val, ad.Err()
}

// nestedValue returns the attribute of type typ inside b ("" if absent).
func nestedValue(b []byte, typ uint16) (string, error) {
	ad, err := mdnetlink.NewAttributeDecoder(b)
	if err != nil {
		return "", err
	}
	for ad.Next() {
		if ad.Type() == typ {
			return string(ad.Bytes()), nil
		}
	}
	return "", ad.Err()
}
