package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/pinwall/pinwall/harness/containers"
	"github.com/pinwall/pinwall/outfile"
	"github.com/pinwall/pinwall/pki"
	"github.com/pinwall/pinwall/scenarios"
)

// cmdCompose writes a docker-compose project of one scenario run, to poke
// at by hand.
func cmdCompose(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compose", "pinwall compose [--scenario ID] [--variant KEY] [--dir DIR] [--image IMAGE]", args, stdout, stderr)
	id := fs.String("scenario", "visibility", "scenario whose topology to write")
	variant := fs.String("variant", "", "variant key (e.g. with-fix); empty means the first")
	dir := fs.String("dir", "docker/visibility", "directory to write the project to")
	image := fs.String("image", "pinwall-node:local", "pinwall node image (make image builds pinwall-node:local)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	all, err := scenarios.Catalogue()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	ss, err := scenarios.Find(all, *id)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	runs, err := ss[0].Runs()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	run := runs[0]
	for _, r := range runs {
		if string(r.Variant) == *variant || r.Key() == *id+"/"+*variant {
			run = r
		}
	}
	set, err := pki.NewSet(pki.Config{}, run.Plan.Spec.WithDefaults().Tenant)
	if err != nil {
		return err
	}
	files, err := containers.ComposeFiles(run.Plan, set, *image)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	out, err := outfile.OpenDir(*dir)
	if err != nil {
		return err
	}
	defer out.Close()
	for _, name := range containers.SortedNames(files) {
		// Node configurations hold private keys (CA, gateway, device,
		// origins): readable by their owner only.
		perm := outfile.Public
		if strings.HasSuffix(name, ".json") {
			perm = outfile.Private
		}
		if err := out.WriteFile(name, files[name], perm); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s (%s): cd %s && docker-compose up\n", *dir, run.Key(), *dir)
	return nil
}
