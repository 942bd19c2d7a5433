package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/cmd/ctl/internal/patch"
	"github.com/skiffhq/skiff/controlplane/api/kinds"
	"github.com/skiffhq/skiff/controlplane/api/manifest"
	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
	"github.com/skiffhq/skiff/proto/client"
)

const editHeader = `# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
`

func (o *options) editCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "edit (KIND NAME | KIND/NAME)",
		Short: "Edit an object in $EDITOR and write it back",
		Long: `Edit opens the object in $KUBE_EDITOR or $EDITOR (default vi). On save it is
written back, conditionally on the resourceVersion it was read at; if it is
invalid (or the server refuses it) the file re-opens with the errors at the
top, as kubectl's edit does. Saving it unchanged, or empty, cancels.`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: o.completeObjects,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "yaml" && output != "json" {
				return fmt.Errorf("-o %q: must be yaml or json", output)
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := o.ctx(cmd.Context())
			ts, err := o.targets(ctx, c, args, "", false)
			cancel()
			if err != nil {
				return err
			}
			if len(ts) != 1 {
				return fmt.Errorf("edit takes exactly one object, got %d", len(ts))
			}
			return o.edit(cmd.Context(), c, ts[0], output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "edit as yaml or json")
	return cmd
}

func (o *options) edit(parent context.Context, c *client.Client, t target, format string) error {
	ctx, cancel := o.ctx(parent)
	cur, err := o.getObject(ctx, c, t)
	cancel()
	if err != nil {
		return err
	}
	var original []byte
	if format == "json" {
		original, err = manifest.MarshalJSONIndent(cur)
	} else {
		original, err = manifest.MarshalYAML(cur)
	}
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ctl-edit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, t.kind.Singular+"-"+t.name+"."+format)
	content := append([]byte(editHeader), original...)
	var lastFailed []byte
	for {
		if err := os.WriteFile(file, content, 0o600); err != nil {
			return err
		}
		if err := o.runEditor(file); err != nil {
			return err
		}
		edited, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		body := stripComments(edited)
		if len(bytes.TrimSpace(body)) == 0 {
			fmt.Fprintln(o.streams.Err, "Edit cancelled, saved file was empty.")
			return nil
		}
		if bytes.Equal(bytes.TrimSpace(body), bytes.TrimSpace(original)) {
			if lastFailed != nil {
				return errors.New("edit cancelled, no valid changes were saved")
			}
			fmt.Fprintln(o.streams.Out, "Edit cancelled, no changes made.")
			return nil
		}
		if lastFailed != nil && bytes.Equal(body, lastFailed) {
			return errors.New("edit cancelled, no valid changes were saved: the edit saved again still fails")
		}
		err = o.saveEdited(parent, c, t, cur, body)
		if err == nil {
			fmt.Fprintf(o.streams.Out, "%s edited\n", resourceName(t.kind, t.name))
			return nil
		}
		if client.IsConflict(err) || client.IsNotFound(err) || client.IsForbidden(err) || client.IsUnavailable(err) {
			return err // re-opening cannot fix these
		}
		lastFailed = body
		content = append(append([]byte(editHeader), errorComment(err)...), body...)
	}
}

// saveEdited decodes and validates the edited object and sends what the
// user changed as a merge patch (as kubectl does: status or other fields
// a controller wrote meanwhile do not make the edit fail), conditional on
// the resourceVersion only when the user changed it.
func (o *options) saveEdited(parent context.Context, c *client.Client, t target, cur kinds.Object, body []byte) error {
	src := t.kind.Singular + "/" + t.name
	d, err := o.dec.DecodeOne(src, body)
	if err != nil {
		return err
	}
	if d.Kind != t.kind || d.Object.GetMetadata().GetName() != t.name {
		return fmt.Errorf("the edit changed the object's kind or name (to %s %q); create a new object instead", d.Kind.Name, d.Object.GetMetadata().GetName())
	}
	if err := d.Validate(src); err != nil {
		return err
	}
	before, err := manifest.MarshalJSON(cur)
	if err != nil {
		return err
	}
	after, err := manifest.MarshalJSON(d.Object)
	if err != nil {
		return err
	}
	p, err := patch.CreateMergePatch(before, after)
	if err != nil {
		return err
	}
	ctx, cancel := o.ctx(parent)
	defer cancel()
	_, err = c.API().Patch(ctx, &apiv1.PatchRequest{Kind: t.kind.Name, Namespace: t.ns, Name: t.name, Patch: p})
	return err
}

// errorComment renders an error as comment lines for the top of the file.
func errorComment(err error) []byte {
	var b bytes.Buffer
	b.WriteString("# ctl: the edit could not be saved:\n")
	for _, line := range strings.Split(strings.TrimSpace(Message(err)), "\n") {
		b.WriteString("# " + line + "\n")
	}
	b.WriteString("#\n")
	return b.Bytes()
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

// runEditor runs $KUBE_EDITOR, $EDITOR or vi on file, with this
// command's terminal.
func (o *options) runEditor(file string) error {
	editor := os.Getenv("KUBE_EDITOR")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	argv := strings.Fields(editor)
	cmd := exec.Command(argv[0], append(argv[1:], file)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.streams.In, o.streams.Out, o.streams.Err
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("editor %q: %w", editor, err)
	}
	return nil
}
