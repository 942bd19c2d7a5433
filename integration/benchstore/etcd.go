package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skiffhq/skiff/consensus/consensustest"
)

// etcdSystem is a three-member etcd cluster of child processes on loopback.
type etcdSystem struct {
	members   []*etcdMember
	clients   []*clientv3.Client
	tlsOn     bool
	version   string
	clientTLS *tls.Config
}

type etcdMember struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	cmd       *exec.Cmd
	logPath   string
	exited    chan struct{}
	waitErr   error
}

// startEtcd starts members etcd processes under dir. With useTLS, clients
// and peers speak mutual TLS with certificates from a fresh test CA, as
// Skiff's nodes do; otherwise plain HTTP.
//
// etcd cannot be told to bind port 0 and report it, so its ports are asked
// of the OS and released before etcd binds them; another process can take
// one in between. A start that failed on "address already in use" is tried
// again with fresh ports and a fresh data folder.
func startEtcd(bin, dir string, members, connsPerMember int, useTLS bool) (*etcdSystem, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var e *etcdSystem
		attemptDir := filepath.Join(dir, fmt.Sprintf("attempt%d", attempt))
		if err = os.MkdirAll(attemptDir, 0o700); err != nil {
			return nil, err
		}
		e, err = startEtcdOnce(bin, attemptDir, members, connsPerMember, useTLS)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			return e, err
		}
	}
	return nil, err
}

func startEtcdOnce(bin, dir string, members, connsPerMember int, useTLS bool) (*etcdSystem, error) {
	version, err := etcdVersion(bin)
	if err != nil {
		return nil, err
	}
	e := &etcdSystem{tlsOn: useTLS, version: version}
	scheme := "http"
	var pkiFiles map[string][2]string // name -> cert, key file
	var caFile string
	if useTLS {
		scheme = "https"
		pki, err := consensustest.NewPKI()
		if err != nil {
			return nil, err
		}
		caFile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.CA.Raw}), 0o600); err != nil {
			return nil, err
		}
		pkiFiles = map[string][2]string{}
		for i := range members {
			name := fmt.Sprintf("m%d", i+1)
			if pkiFiles[name], err = writeCert(pki, dir, name); err != nil {
				return nil, err
			}
		}
		_, e.clientTLS, err = pki.TLSConfigs("bench")
		if err != nil {
			return nil, err
		}
	}
	var initial []string
	for i := range members {
		cport, err := freePort()
		if err != nil {
			return nil, err
		}
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		m := &etcdMember{
			name:      fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, cport),
			peerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, pport),
		}
		m.dataDir = filepath.Join(dir, m.name+".etcd")
		m.logPath = filepath.Join(dir, m.name+".log")
		e.members = append(e.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	token := fmt.Sprintf("skiff-bench-%d", time.Now().UnixNano())
	for _, m := range e.members {
		args := []string{
			"--name", m.name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap", "--log-level", "warn",
		}
		if useTLS {
			f := pkiFiles[m.name]
			args = append(args,
				"--cert-file", f[0], "--key-file", f[1], "--client-cert-auth", "--trusted-ca-file", caFile,
				"--peer-cert-file", f[0], "--peer-key-file", f[1], "--peer-client-cert-auth", "--peer-trusted-ca-file", caFile)
		}
		if err := m.start(bin, args); err != nil {
			e.Close()
			return nil, err
		}
	}
	for j := 0; j < connsPerMember*members; j++ {
		m := e.members[j%members]
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{m.clientURL},
			DialTimeout: 5 * time.Second,
			TLS:         e.clientTLS,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("etcd client for %s: %w", m.clientURL, err)
		}
		e.clients = append(e.clients, c)
	}
	if err := e.waitHealthy(30 * time.Second); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func etcdVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w (install Debian etcd-server: make deps)", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "etcd Version:")), nil
}

// writeCert issues a loopback certificate for name and writes it and its
// key as PEM files.
func writeCert(pki *consensustest.PKI, dir, name string) ([2]string, error) {
	cert, err := pki.Issue(name)
	if err != nil {
		return [2]string{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return [2]string{}, fmt.Errorf("encode key for %s: %w", name, err)
	}
	files := [2]string{filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")}
	if err := os.WriteFile(files[0], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		return [2]string{}, err
	}
	if err := os.WriteFile(files[1], pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return [2]string{}, err
	}
	return files, nil
}

func (m *etcdMember) start(bin string, args []string) error {
	logf, err := os.Create(m.logPath)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	// Its own process group, and killed if the benchmark dies first.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start etcd %s: %w", m.name, err)
	}
	m.exited = make(chan struct{})
	go func() {
		m.waitErr = m.cmd.Wait()
		_ = logf.Close()
		close(m.exited)
	}()
	return nil
}

func (m *etcdMember) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

func (m *etcdMember) logTail() string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// waitHealthy waits until every member answers a linearizable read.
func (e *etcdSystem) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i, m := range e.members {
		c := e.clients[i]
		for {
			select {
			case <-m.exited:
				return fmt.Errorf("etcd %s exited: %v\n%s", m.name, m.waitErr, m.logTail())
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Get(ctx, "health")
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd %s not healthy after %s: %w\n%s", m.name, timeout, err, m.logTail())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Endpoints lists the members' client URLs.
func (e *etcdSystem) Endpoints() []string {
	var out []string
	for _, m := range e.members {
		out = append(out, m.clientURL)
	}
	return out
}

// Leader names the current leader member, empty when unknown.
func (e *etcdSystem) Leader() string {
	for i, m := range e.members {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := e.clients[i].Status(ctx, m.clientURL)
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			return m.name
		}
	}
	return ""
}

// PIDs are the member processes' ids (for CPU accounting).
func (e *etcdSystem) PIDs() []int {
	var out []int
	for _, m := range e.members {
		if m.cmd != nil && m.cmd.Process != nil {
			out = append(out, m.cmd.Process.Pid)
		}
	}
	return out
}

func (e *etcdSystem) clientFor(i int) kvClient {
	return etcdClient{e.clients[i%len(e.clients)]}
}

// Close closes the clients and stops the members (their data dirs are
// removed with the benchmark's temp dir).
func (e *etcdSystem) Close() {
	for _, c := range e.clients {
		_ = c.Close()
	}
	for _, m := range e.members {
		m.stop()
	}
}

type etcdClient struct{ c *clientv3.Client }

func (c etcdClient) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.c.Put(ctx, key, string(value))
	return err
}

func (c etcdClient) Get(ctx context.Context, key string) error {
	resp, err := c.c.Get(ctx, key) // linearizable unless WithSerializable
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 {
		return fmt.Errorf("get %s: %d keys, want 1", key, len(resp.Kvs))
	}
	return nil
}

// freePort asks the OS for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
