package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	"github.com/skiffhq/skiff/proto/client"
)

// Streams are a command's standard input, output and error.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Version of the ctl client; the build may override it.
var Version = "v0.1.0-dev"

// options are the global flags.
type options struct {
	streams       Streams
	configPath    string
	contextName   string // --context: a context of the config file
	servers       []string
	namespace     string // -n as given
	configNS      string // the config file's namespace
	allNamespaces bool
	timeout       time.Duration
	reg           *kinds.Registry
	dec           *manifest.Decoder
}

// Main runs ctl with args and returns the exit code. Errors are printed as
// one "error: …" line (validation errors list one field per line).
func Main(args []string, s Streams) int {
	if err := Run(context.Background(), args, s); err != nil {
		if errors.Is(err, errCannot) {
			return 1 // `auth can-i` printed "no"
		}
		var exit *ExitError
		if errors.As(err, &exit) { // exec: the command's own exit code
			fmt.Fprintln(s.Err, exit.Error())
			return exit.Code
		}
		fmt.Fprintln(s.Err, "error: "+Message(err))
		return 1
	}
	return 0
}

// Run executes one ctl command line.
func Run(ctx context.Context, args []string, s Streams) error {
	cmd := NewRootCommand(s)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// Message renders an error for humans: a gRPC status becomes its message.
func Message(err error) string {
	var ue *client.UnavailableError
	if errors.As(err, &ue) {
		return ue.Error()
	}
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// NewRootCommand builds the command tree.
func NewRootCommand(s Streams) *cobra.Command {
	o := &options{streams: s, reg: kinds.NewRegistry()}
	o.dec = manifest.NewDecoder(o.reg)
	root := &cobra.Command{
		Use:           "ctl",
		Short:         "ctl runs and talks to a Skiff cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	pf := root.PersistentFlags()
	pf.StringVar(&o.configPath, "config", "", "client config file (default $"+client.ConfigEnv+" or ~/.skiff/config)")
	pf.StringVar(&o.contextName, "context", "", "the config file's context (cluster) to use (default its current-context)")
	pf.StringSliceVar(&o.servers, "server", nil, "API server address(es) host:port, overriding the config file's")
	pf.StringVarP(&o.namespace, "namespace", "n", "", "namespace (default: the config's, else \"default\")")
	pf.DurationVar(&o.timeout, "request-timeout", 30*time.Second, "give up on a request after this long")
	_ = root.RegisterFlagCompletionFunc("namespace", o.completeNames("Namespace"))
	_ = root.RegisterFlagCompletionFunc("context", o.completeContexts)
	root.AddCommand(o.applyCmd(), o.getCmd(), o.describeCmd(), o.deleteCmd(), o.scaleCmd(), o.createCmd(),
		o.versionCmd())
	root.AddCommand(o.nodeCommands()...)
	root.AddCommand(o.agentCmd())
	root.AddCommand(o.rolloutCmd(), o.setCmd())
	root.AddCommand(o.topCmd())
	root.AddCommand(o.dashboardCmd())
	root.AddCommand(o.authCmd())
	root.AddCommand(o.verbCommands()...)
	root.AddCommand(o.streamCommands()...)
	return root
}

// loadConfig reads the client config file, with --server overriding its
// servers.
func (o *options) loadConfig() (*client.Config, error) {
	path := o.configPath
	if path == "" {
		path = client.DefaultConfigPath()
	}
	cfg, err := client.LoadConfigContext(path, o.contextName)
	if err != nil {
		// In a pod, as kubectl: no --config, --server or $SKIFF_CONFIG and
		// no config file, but a service account token mounted — use it,
		// through the kubernetes Service.
		if errors.Is(err, os.ErrNotExist) && o.configPath == "" && len(o.servers) == 0 && os.Getenv(client.ConfigEnv) == "" && o.contextName == "" {
			if ic, icErr := client.InClusterConfig(); icErr == nil {
				return ic, nil
			}
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no client config at %s: pass --config, set $%s, or create a cluster with `ctl init`", path, client.ConfigEnv)
		}
		return nil, err
	}
	if len(o.servers) > 0 {
		cfg.Servers = o.servers
	}
	return cfg, nil
}

// connect builds a client from the config file and flags.
func (o *options) connect() (*client.Client, error) {
	cfg, err := o.loadConfig()
	if err != nil {
		return nil, err
	}
	o.configNS = cfg.Namespace
	return client.NewFromConfig(cfg)
}

// ns is the namespace of a command: -n, else the config's, else "default".
func (o *options) ns() string {
	switch {
	case o.namespace != "":
		return o.namespace
	case o.configNS != "":
		return o.configNS
	}
	return "default"
}

func (o *options) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, o.timeout)
}

// resourceName is kubectl's "deployment.apps/web".
func resourceName(k *kinds.Kind, name string) string {
	if k.Group == "" {
		return k.Singular + "/" + name
	}
	return k.Singular + "." + k.Group + "/" + name
}

// completeNames completes object names of a kind from the cluster.
func (o *options) completeNames(kind string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		return o.namesOf(cmd.Context(), kind, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func (o *options) namesOf(ctx context.Context, kind, prefix string) []string {
	c, err := o.connect()
	if err != nil {
		return nil
	}
	defer c.Close()
	k, err := o.reg.Lookup(kind)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ns := ""
	if k.Namespaced {
		ns = o.ns()
	}
	envs, _, err := c.ListEnvelopes(ctx, k.Name, client.ListOptions{Namespace: ns})
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range envs {
		if obj, err := client.Unpack(e); err == nil && strings.HasPrefix(obj.GetMetadata().GetName(), prefix) {
			out = append(out, obj.GetMetadata().GetName())
		}
	}
	return out
}

// completeKindThenName completes a kind as the first argument and object
// names after it.
func (o *options) completeKindThenName(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		var out []string
		for _, k := range o.reg.Kinds() {
			for _, n := range append([]string{k.Plural}, k.ShortNames...) {
				if strings.HasPrefix(n, prefix) {
					out = append(out, n)
				}
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	return o.namesOf(cmd.Context(), args[0], prefix), cobra.ShellCompDirectiveNoFileComp
}

func (o *options) lookup(name string) (*kinds.Kind, error) {
	k, err := o.reg.Lookup(name)
	if err != nil {
		return nil, err
	}
	return k, nil
}
