package cli

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/proto/client"
)

// `ctl config`: the client config file, which may hold several clusters
// as contexts (proto/client/contexts.go); a file of one cluster, as
// `ctl init` and `ctl user create` write it, is the context "default".

func (o *options) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config SUBCOMMAND", Short: "View and change the client config file (clusters as contexts)"}
	cmd.AddCommand(o.configViewCmd(), o.getContextsCmd(), o.useContextCmd(), o.currentContextCmd(), o.addContextCmd())
	return cmd
}

func (o *options) configFile() (string, *client.Config, error) {
	path := o.configPath
	if path == "" {
		path = client.DefaultConfigPath()
	}
	cfg, err := client.LoadConfigFile(path)
	return path, cfg, err
}

func (o *options) configViewCmd() *cobra.Command {
	var raw, minify bool
	cmd := &cobra.Command{
		Use:   "view [--minify] [--raw]",
		Short: "Print the config file (inline keys and certificates redacted unless --raw)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, cfg, err := o.configFile()
			if err != nil {
				return err
			}
			if minify && len(cfg.Contexts) > 0 {
				name := o.contextName
				if name == "" {
					name = cfg.CurrentContext
				}
				var keep []client.NamedContext
				for _, nc := range cfg.Contexts {
					if nc.Name == name {
						keep = append(keep, nc)
					}
				}
				if len(keep) == 0 {
					return fmt.Errorf("no context %q to show (contexts: %s)", name, cfg.ContextNames())
				}
				cfg.Contexts, cfg.CurrentContext = keep, name
			}
			if !raw {
				redact(cfg)
				for i := range cfg.Contexts {
					redact(&cfg.Contexts[i].Config)
				}
			}
			out, err := sigsyaml.Marshal(cfg)
			if err != nil {
				return err
			}
			_, err = o.streams.Out.Write(out)
			return err
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "show inline certificates and keys")
	cmd.Flags().BoolVar(&minify, "minify", false, "show only the current context (or --context)")
	return cmd
}

// redact hides inline secrets as kubectl does.
func redact(c *client.Config) {
	for _, f := range []*string{&c.CertificateAuthorityData, &c.ClientCertificateData} {
		if *f != "" {
			*f = "DATA+OMITTED"
		}
	}
	if c.ClientKeyData != "" {
		c.ClientKeyData = "REDACTED"
	}
}

func (o *options) getContextsCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "get-contexts [NAME]",
		Short:             "List the config file's contexts (clusters)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: o.completeContexts,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cfg, err := o.configFile()
			if err != nil {
				return err
			}
			type row struct{ current, name, servers, ns string }
			var rows []row
			if len(cfg.Contexts) == 0 {
				rows = append(rows, row{"*", client.DefaultContextName, strings.Join(cfg.Servers, ","), cfg.Namespace})
			}
			for _, nc := range cfg.Contexts {
				cur := ""
				if nc.Name == cfg.CurrentContext {
					cur = "*"
				}
				rows = append(rows, row{cur, nc.Name, strings.Join(nc.Servers, ","), nc.Namespace})
			}
			tw := tabwriter.NewWriter(o.streams.Out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tSERVERS\tNAMESPACE")
			found := false
			for _, r := range rows {
				if len(args) == 1 && r.name != args[0] {
					continue
				}
				found = true
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.current, r.name, r.servers, r.ns)
			}
			if len(args) == 1 && !found {
				return fmt.Errorf("context %q not found", args[0])
			}
			return tw.Flush()
		},
	}
}

func (o *options) useContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "use-context NAME",
		Short:             "Make NAME the config file's current context",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeContexts,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, cfg, err := o.configFile()
			if err != nil {
				return err
			}
			if len(cfg.Contexts) == 0 {
				if args[0] == client.DefaultContextName {
					fmt.Fprintf(o.streams.Out, "Switched to context %q.\n", args[0])
					return nil
				}
				return fmt.Errorf("no context %q: the config file holds one cluster (%q); add others with `ctl config add-context NAME --from FILE`", args[0], client.DefaultContextName)
			}
			if _, err := client.LoadConfigContext(path, args[0]); err != nil {
				return err
			}
			cfg.CurrentContext = args[0]
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "Switched to context %q.\n", args[0])
			return nil
		},
	}
}

func (o *options) currentContextCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the config file's current context",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, cfg, err := o.configFile()
			if err != nil {
				return err
			}
			switch {
			case len(cfg.Contexts) == 0:
				fmt.Fprintln(o.streams.Out, client.DefaultContextName)
			case cfg.CurrentContext == "":
				return fmt.Errorf("current-context is not set")
			default:
				fmt.Fprintln(o.streams.Out, cfg.CurrentContext)
			}
			return nil
		},
	}
}

func (o *options) addContextCmd() *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "add-context NAME --from FILE",
		Short: "Add the cluster of another config file as context NAME",
		Long: `Add-context copies the cluster of a one-cluster config file (as ctl init or
ctl user create write it) into this config file as context NAME, with its
certificates and key inline, so the file stands on its own. A file that
held one cluster keeps it as the context "default", which stays current.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return fmt.Errorf("--from FILE is required")
			}
			src, err := client.LoadConfig(from)
			if err != nil {
				return err
			}
			inlined, err := inline(src, from)
			if err != nil {
				return err
			}
			path, cfg, err := o.configFile()
			if errors.Is(err, os.ErrNotExist) {
				cfg, err = &client.Config{}, nil
			}
			if err != nil {
				return err
			}
			if len(cfg.Contexts) == 0 && len(cfg.Servers) > 0 {
				// The file's one cluster becomes the context "default".
				first, err := inline(cfg, path)
				if err != nil {
					return err
				}
				*cfg = client.Config{CurrentContext: client.DefaultContextName,
					Contexts: []client.NamedContext{{Name: client.DefaultContextName, Config: *first}}}
			}
			for _, nc := range cfg.Contexts {
				if nc.Name == args[0] {
					return fmt.Errorf("context %q already exists", args[0])
				}
			}
			cfg.Contexts = append(cfg.Contexts, client.NamedContext{Name: args[0], Config: *inlined})
			if cfg.CurrentContext == "" {
				cfg.CurrentContext = args[0]
			}
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(o.streams.Out, "Context %q added.\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the config file of the cluster to add")
	return cmd
}

// inline returns a copy of c with its certificate and key files read in,
// so it no longer depends on the folder it came from.
func inline(c *client.Config, path string) (*client.Config, error) {
	out := &client.Config{Servers: c.Servers, ServerName: c.ServerName, Namespace: c.Namespace,
		CertificateAuthorityData: c.CertificateAuthorityData, ClientCertificateData: c.ClientCertificateData, ClientKeyData: c.ClientKeyData}
	read := func(field, file string, dst *string) error {
		if *dst != "" || file == "" {
			return nil
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(path), file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		*dst = base64.StdEncoding.EncodeToString(b)
		return nil
	}
	if err := read("certificate-authority", c.CertificateAuthority, &out.CertificateAuthorityData); err != nil {
		return nil, err
	}
	if err := read("client-certificate", c.ClientCertificate, &out.ClientCertificateData); err != nil {
		return nil, err
	}
	if err := read("client-key", c.ClientKey, &out.ClientKeyData); err != nil {
		return nil, err
	}
	return out, nil
}

// completeContexts completes the config file's context names.
func (o *options) completeContexts(_ *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	_, cfg, err := o.configFile()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	if len(cfg.Contexts) == 0 {
		out = append(out, client.DefaultContextName)
	}
	for _, nc := range cfg.Contexts {
		if strings.HasPrefix(nc.Name, prefix) {
			out = append(out, nc.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
