package gossip

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestTransportPacketsAreCopies: each packet memberlist receives has its
// own buffer of the packet's size (the read buffer is reused, so a packet
// still queued must not change when the next one arrives), and carries its
// sender's address.
func TestTransportPacketsAreCopies(t *testing.T) {
	a, b := listenT(t), listenT(t)
	to := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))
	if _, err := a.WriteTo([]byte("first packet"), to); err != nil {
		t.Fatal(err)
	}
	first := recvPacket(t, b)
	if _, err := a.WriteTo([]byte("2nd"), to); err != nil {
		t.Fatal(err)
	}
	second := recvPacket(t, b)
	if string(first.Buf) != "first packet" || string(second.Buf) != "2nd" {
		t.Fatalf("packets %q, %q; want %q, %q", first.Buf, second.Buf, "first packet", "2nd")
	}
	if cap(first.Buf) > 64 {
		t.Errorf("a 12-byte packet holds a %d-byte buffer, want one of about its size", cap(first.Buf))
	}
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port())); first.From.String() != want {
		t.Errorf("packet from %s, want %s", first.From, want)
	}
}

// TestTransportStreams: a dial reaches the other member's stream channel,
// over TCP on the same port as its UDP.
func TestTransportStreams(t *testing.T) {
	a, b := listenT(t), listenT(t)
	c, err := a.DialTimeout(net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port())), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-b.StreamCh():
		defer s.Close()
		got := make([]byte, 5)
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, []byte("hello")) {
			t.Fatalf("stream read %q, %v; want hello", got, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no stream within 5 s")
	}
}

// TestTransportAdvertise: the advertise address given wins; otherwise the
// bound address and port; a malformed one is refused by name.
func TestTransportAdvertise(t *testing.T) {
	tr := listenT(t)
	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != tr.port() {
		t.Errorf("advertise %s:%d, %v; want 127.0.0.1:%d", ip, port, err, tr.port())
	}
	ip, port, err = tr.FinalAdvertiseAddr("10.1.2.3", 7000)
	if err != nil || !ip.Equal(net.IPv4(10, 1, 2, 3)) || port != 7000 {
		t.Errorf("advertise %s:%d, %v; want 10.1.2.3:7000", ip, port, err)
	}
	if _, _, err := tr.FinalAdvertiseAddr("not-an-ip", 7000); err == nil || !bytes.Contains([]byte(err.Error()), []byte("not-an-ip")) {
		t.Errorf("advertise not-an-ip: %v, want an error naming it", err)
	}
}

func listenT(t *testing.T) *transport {
	t.Helper()
	tr, err := listen(net.IPv4(127, 0, 0, 1).To4(), 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown() })
	return tr
}

func recvPacket(t *testing.T, tr *transport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5 s")
	}
	return nil
}

// TestTransportShutdownWithPacketsWaiting: Shutdown returns even when a
// packet arrived that nobody took (memberlist never started, or stopped).
func TestTransportShutdownWithPacketsWaiting(t *testing.T) {
	a, b := listenT(t), listenT(t)
	if _, err := a.WriteTo([]byte("nobody reads this"), net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let b's read loop block handing it over (no wait would also pass)
	done := make(chan error, 1)
	go func() { done <- b.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown blocked for 5 s with a packet waiting")
	}
}
