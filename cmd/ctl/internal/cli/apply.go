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
)

func (o *options) applyCmd() *cobra.Command {
	var files []string
	var recursive bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests (multi-document YAML or JSON)",
		Example: `  ctl apply -f web.yaml
  ctl apply -f manifests/
  cat web.yaml | ctl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("apply needs -f FILE, DIR or -")
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			docs, err := o.readManifests(files, recursive)
			if err != nil {
				return err
			}
			for _, d := range docs {
				ctx, cancel := o.ctx(cmd.Context())
				_, result, err := c.Apply(ctx, d.Object)
				cancel()
				name := resourceName(d.Kind, d.Object.GetMetadata().GetName())
				if err != nil {
					return fmt.Errorf("%s: %s", name, Message(err))
				}
				fmt.Fprintf(o.streams.Out, "%s %s\n", name, strings.ToLower(result.String()))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "descend into subdirectories of -f directories")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

// readManifests decodes and validates every document of the inputs. Any
// problem stops everything before a single write, listing file:line: path.
// Cluster-scoped objects come first (namespaces among them), so the
// objects in the namespaces can be admitted.
func (o *options) readManifests(inputs []string, recursive bool) ([]*manifest.Document, error) {
	var docs []*manifest.Document
	var problems []string
	for _, in := range inputs {
		sources, err := expandInput(in, recursive)
		if err != nil {
			return nil, err
		}
		for _, src := range sources {
			var data []byte
			if src == "-" {
				data, err = io.ReadAll(o.streams.In)
			} else {
				data, err = os.ReadFile(src)
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", src, err)
			}
			got, err := o.dec.Decode(src, data)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			for _, d := range got {
				if err := o.placeNamespace(d, src); err != nil {
					problems = append(problems, err.Error())
					continue
				}
				if err := d.Validate(src); err != nil {
					problems = append(problems, err.Error())
					continue
				}
				docs = append(docs, d)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	sort.SliceStable(docs, func(i, j int) bool {
		return !docs[i].Kind.Namespaced && docs[j].Kind.Namespaced
	})
	return docs, nil
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
