package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

func (o *options) applyCmd() *cobra.Command {
	var files []string
	var recursive bool
	var dryRun string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests (multi-document YAML or JSON)",
		Long: `Create or update objects from manifests. Every object is applied and reported on
its own (created, configured, unchanged, or an error with file:line); one that fails does not
stop the others, and the exit status is 1 if any failed. Lists merge by key as kubectl's apply
does (containers by name, ports by port and protocol, env by name, …), so fields the cluster
set (a Service's clusterIP and nodePort) survive a re-apply.`,
		Example: `  ctl apply -f web.yaml
  ctl apply -f manifests/
  ctl apply -f web.yaml --dry-run=server
  cat web.yaml | ctl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("apply needs -f FILE, DIR or -")
			}
			serverDry, err := parseDryRun(dryRun)
			if err != nil {
				return err
			}
			docs, problems, err := o.readManifests(files, recursive)
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			rep := newBatchReport(o, "applied")
			rep.problems(problems)
			suffix := ""
			if serverDry {
				suffix = " (server dry run)"
			}
			for _, d := range docs {
				name := resourceName(d.Kind, d.Object.GetMetadata().GetName())
				env, err := client.Pack(d.Object)
				if err != nil {
					rep.failed(d, name, err)
					continue
				}
				ctx, cancel := o.ctx(cmd.Context())
				resp, err := c.API().Apply(ctx, &apiv1.ApplyRequest{Object: env, DryRun: serverDry})
				cancel()
				if err != nil {
					rep.failed(d, name, err)
					continue
				}
				rep.done(name, name+" "+strings.ToLower(resp.GetResult().String())+suffix)
			}
			return rep.err()
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f directories")
	cmd.Flags().StringVar(&dryRun, "dry-run", "none", `"server": the API validates and admits every object but stores nothing; "none": apply`)
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

func parseDryRun(s string) (bool, error) {
	switch s {
	case "none", "":
		return false, nil
	case "server":
		return true, nil
	}
	return false, fmt.Errorf("--dry-run %q: must be none or server (client dry runs are not supported: the server decides)", s)
}

// batchReport reports the objects of one apply or delete -f each on its own
// line, and ends with an error that counts the failures and names the
// objects that did go through.
type batchReport struct {
	o         *options
	verb      string
	succeeded []string
	failures  int
}

func newBatchReport(o *options, verb string) *batchReport { return &batchReport{o: o, verb: verb} }

// problems reports the documents that could not be read, each with its
// problems one a line (file:line: path: message).
func (r *batchReport) problems(ps []error) {
	for _, p := range ps {
		for _, line := range strings.Split(p.Error(), "\n") {
			fmt.Fprintln(r.o.streams.Err, "error: "+line)
		}
		r.failures++
	}
}

func (r *batchReport) failed(d *manifest.Document, name string, err error) {
	fmt.Fprintf(r.o.streams.Err, "error: %s:%d: %s: %s\n", d.Source, d.Line, name, Message(err))
	r.failures++
}

// done reports one object that went through: line is what to print.
func (r *batchReport) done(name, line string) {
	fmt.Fprintln(r.o.streams.Out, line)
	r.succeeded = append(r.succeeded, name)
}

// err is nil when every object went through.
func (r *batchReport) err() error {
	if r.failures == 0 {
		return nil
	}
	what := "none was " + r.verb
	if len(r.succeeded) > 0 {
		what = fmt.Sprintf("%d %s: %s", len(r.succeeded), r.verb, strings.Join(r.succeeded, ", "))
	}
	return fmt.Errorf("%d of %d objects failed (each is reported above); %s", r.failures, r.failures+len(r.succeeded), what)
}

// readManifests decodes and validates every document of the inputs. The
// documents that are fine come back with their source; each of the others
// is one error listing its problems ("file:line: path: message" a line),
// so the caller can act on the good ones and report the rest. Cluster-scoped objects come
// first (namespaces among them), so the objects in the namespaces can be
// admitted. err is for inputs that cannot be read at all.
func (o *options) readManifests(inputs []string, recursive bool) (docs []*manifest.Document, problems []error, err error) {
	for _, in := range inputs {
		sources, err := expandInput(in, recursive)
		if err != nil {
			return nil, nil, err
		}
		for _, src := range sources {
			var data []byte
			if src == "-" {
				data, err = io.ReadAll(o.streams.In)
			} else {
				data, err = os.ReadFile(src)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", src, err)
			}
			got, failed := o.dec.DecodeEach(src, data)
			for _, e := range failed {
				problems = append(problems, e)
			}
			for _, d := range got {
				if err := o.placeNamespace(d, src); err != nil {
					problems = append(problems, err)
					continue
				}
				if err := d.Validate(src); err != nil {
					problems = append(problems, err)
					continue
				}
				docs = append(docs, d)
			}
		}
	}
	sort.SliceStable(docs, func(i, j int) bool {
		return !docs[i].Kind.Namespaced && docs[j].Kind.Namespaced
	})
	return docs, problems, nil
}

// placeNamespace gives a namespaced object without a namespace the -n one;
// an explicit -n that disagrees with the manifest is an error, as in kubectl.
func (o *options) placeNamespace(d *manifest.Document, src string) error {
	if !d.Kind.Namespaced {
		return nil
	}
	md := kinds.Meta(d.Object)
	if md.Namespace == "" {
		md.Namespace = o.ns()
		return nil
	}
	if o.namespace != "" && md.Namespace != o.namespace {
		return fmt.Errorf("%s:%d: the namespace from the provided object %q does not match the namespace %q; remove one of them",
			src, d.Line, md.Namespace, o.namespace)
	}
	return nil
}

func expandInput(in string, recursive bool) ([]string, error) {
	if in == "-" {
		return []string{"-"}, nil
	}
	fi, err := os.Stat(in)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{in}, nil
	}
	var out []string
	err = filepath.WalkDir(in, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != in && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no .yaml, .yml or .json files in %s", in)
	}
	return out, nil
}
