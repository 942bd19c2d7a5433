package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/dashboard"
)

// dashboardCmd prints (and opens) a one-time login link to the web
// dashboard of a control node. The link's token is minted by the control
// node for the identity of this client config's certificate, so the
// dashboard shows and does what that identity may do through the API.
func (o *options) dashboardCmd() *cobra.Command {
	var (
		open bool
		port int
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print a one-time login link to the web dashboard (--open opens it)",
		Long: `Print a login link to the web dashboard served by every control node
(HTTPS, port 7448). The link works once, within 60 seconds, and logs the
browser in as the user of your client config: a viewer sees, an admin acts.
Browsers do not know the cluster CA: trust its ca.crt, or expect a warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if port <= 0 || port > 65535 {
				return fmt.Errorf("--dashboard-port %d: want 1-65535", port)
			}
			cfg, err := o.loadConfig()
			if err != nil {
				return err
			}
			tc, err := cfg.TLS()
			if err != nil {
				return err
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}, Timeout: o.timeout}
			defer hc.CloseIdleConnections()
			ctx, cancel := o.ctx(cmd.Context())
			defer cancel()
			var errs []error
			for _, server := range cfg.Servers {
				link, err := mintDashboardLink(ctx, hc, dashboardAddr(server, port))
				if err != nil {
					errs = append(errs, err)
					var refused refusedError
					if errors.As(err, &refused) {
						break // another control node would refuse the same identity
					}
					continue
				}
				fmt.Fprintf(o.streams.Out, "%s\n(valid once, for %d seconds)\n", link.URL, link.ExpiresInSeconds)
				if open {
					return openBrowser(o.streams.Err, link.URL)
				}
				return nil
			}
			return fmt.Errorf("no dashboard login link: %w", errors.Join(errs...))
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "open the link with xdg-open")
	cmd.Flags().IntVar(&port, "dashboard-port", dashboard.DefaultPort, "the control nodes' dashboard port")
	return cmd
}

// dashboardAddr is an API server's host with the dashboard port.
func dashboardAddr(server string, port int) string {
	host := server
	if h, _, err := net.SplitHostPort(server); err == nil {
		host = h
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// refusedError: the control node answered and refused the identity.
type refusedError struct{ msg string }

func (e refusedError) Error() string { return e.msg }

func mintDashboardLink(ctx context.Context, hc *http.Client, addr string) (dashboard.LoginToken, error) {
	var tok dashboard.LoginToken
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+dashboard.TokenPath, nil)
	if err != nil {
		return tok, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return tok, fmt.Errorf("dashboard at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		return tok, refusedError{fmt.Sprintf("dashboard at %s refused: %s", addr, strings.TrimSpace(string(body)))}
	case resp.StatusCode != http.StatusOK:
		return tok, fmt.Errorf("dashboard at %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.URL == "" {
		return tok, fmt.Errorf("dashboard at %s: unreadable answer %q", addr, body)
	}
	return tok, nil
}

func openBrowser(errOut io.Writer, url string) error {
	path, err := exec.LookPath("xdg-open")
	if err != nil {
		fmt.Fprintln(errOut, "--open: xdg-open is not installed; open the link above yourself")
		return nil
	}
	if err := exec.Command(path, url).Start(); err != nil {
		return fmt.Errorf("--open: %w", err)
	}
	return nil
}
